"""``ner-worker run``, the Kafka stream: consume → parse → tokenize → batch → engine → decode → publish → commit."""

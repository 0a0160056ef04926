"""The Kafka stream: consume → parse → tokenize → batch → engine → decode → publish → commit."""

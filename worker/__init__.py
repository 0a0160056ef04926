"""kafka-ner-worker: named entity recognition on Kafka streams."""

__version__ = "0.1.0"

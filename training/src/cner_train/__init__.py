"""cner-train: the training package of cner (Chinese clinical NER on Kafka)."""

__version__ = "0.1.0"

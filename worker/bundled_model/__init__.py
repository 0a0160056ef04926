"""The tiny NER model that ships with the project (made by tools/train_tiny_ner.py).

It lets the demo and the tests run without downloading a model; see tiny-ner/MODEL_CARD.md.
"""

from pathlib import Path

TINY_NER_PATH: Path = Path(__file__).resolve().parent / "tiny-ner"

__all__ = ["TINY_NER_PATH"]

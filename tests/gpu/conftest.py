"""Fixtures of the GPU tests: the model and the documents every engine annotates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.parity.corpus import corpus
from worker.bundled_model import TINY_NER_PATH


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped tiny NER model; where it is not built yet, a tiny BERT trained here in seconds
    (random weights would put near-ties between labels on every token, which no trained model has)."""
    if (TINY_NER_PATH / "config.json").exists():
        return TINY_NER_PATH
    from bench._models import build_bert, train_tiny_tagger

    path = tmp_path_factory.mktemp("tiny-bert")
    build_bert(path, shape="tiny", dtype="float32")
    accuracy = train_tiny_tagger(path)
    print(f"\ntiny tagger trained: token accuracy {accuracy:.4f}")
    return path


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus(300, seed=77, long_every=10, long_words=400)

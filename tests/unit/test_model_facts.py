"""What every engine reads from a model folder: name, labels, longest window, padding id."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig, RobertaConfig

from worker.engine.base import read_model_facts

LABELS = {0: "O", 1: "B-PER", 2: "I-PER"}


def _saved(config: object, folder: Path) -> str:
    config.save_pretrained(folder)  # type: ignore[attr-defined]
    return str(folder)


def test_bert_folder_gives_its_labels_name_and_position_limit(tmp_path: Path) -> None:
    model = _saved(BertConfig(max_position_embeddings=256, pad_token_id=0, id2label=LABELS), tmp_path / "my-ner")
    facts = read_model_facts(model)
    assert (facts.name, facts.id2label, facts.max_length, facts.pad_token_id) == ("my-ner", LABELS, 256, 0)


def test_caps_only_lower_the_limit_and_zero_means_none(tmp_path: Path) -> None:
    model = _saved(BertConfig(max_position_embeddings=256, id2label=LABELS), tmp_path / "m")
    assert read_model_facts(model, 0, 128).max_length == 128
    assert read_model_facts(model, 64, 128).max_length == 64
    assert read_model_facts(model, 1024).max_length == 256


def test_roberta_positions_below_the_padding_index_are_not_usable(tmp_path: Path) -> None:
    model = _saved(RobertaConfig(max_position_embeddings=514, pad_token_id=1, id2label=LABELS), tmp_path / "r")
    facts = read_model_facts(model)
    assert facts.max_length == 512 and facts.pad_token_id == 1


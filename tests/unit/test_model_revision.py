"""NER_MODEL_REVISION picks the revision of a Hugging Face id, through huggingface_hub's own cache.

A hub cache is laid out on disk the way huggingface_hub writes it (refs/<branch> -> a commit,
snapshots/<commit>/ with the files) with two revisions of the shipped model whose labels differ;
with HF_HUB_OFFLINE=1 the real resolution runs without a network.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from worker.annotator import Annotator
from worker.bundled_model import TINY_NER_PATH
from worker.settings import Settings, SettingsError, load_settings

REPO_ID = "acme/tiny-ner"
MAIN, V2 = "a" * 40, "b" * 40


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "hub" / f"models--{REPO_ID.replace('/', '--')}"
    for commit, ref, person in ((MAIN, "main", "PER"), (V2, "v2", "PERSON")):
        snapshot = repo / "snapshots" / commit
        shutil.copytree(TINY_NER_PATH, snapshot, ignore=shutil.ignore_patterns("*.md"))
        config = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
        config["id2label"] = {k: v.replace("-PER", f"-{person}") for k, v in config["id2label"].items()}
        config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
        (snapshot / "config.json").write_text(json.dumps(config), encoding="utf-8")
        if ref == "main":  # weights only in v2: loading them proves the engine asked for v2
            (snapshot / "model.safetensors").unlink()
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit, encoding="utf-8")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return repo


def labels(settings: Settings) -> set[str]:
    return set(Annotator.from_settings(settings).engine.id2label.values())


def test_the_revision_setting_selects_the_snapshot(hub_cache: Path) -> None:
    assert "B-PER" in labels(Settings(model=REPO_ID))
    assert "B-PERSON" in labels(Settings(model=REPO_ID, model_revision="v2"))
    assert "B-PERSON" in labels(Settings(model=REPO_ID, model_revision=V2))


def test_the_engine_loads_the_weights_of_that_revision(hub_cache: Path) -> None:
    engine = Annotator.from_settings(Settings(model=REPO_ID, model_revision="v2")).engine

    async def load() -> None:
        await engine.start()
        await engine.close()

    asyncio.run(load())
    with pytest.raises(OSError):  # the control: the default branch has no weights in this cache
        asyncio.run(Annotator.from_settings(Settings(model=REPO_ID)).engine.start())


def test_an_unknown_revision_fails_instead_of_loading_another(hub_cache: Path) -> None:
    with pytest.raises(OSError):
        Annotator.from_settings(Settings(model=REPO_ID, model_revision="v3"))


def test_a_revision_with_an_engine_that_cannot_take_it_fails_at_start() -> None:
    with pytest.raises(SettingsError, match="NER_MODEL_REVISION: only the hf engine takes a revision"):
        load_settings({"NER_MODEL_REVISION": "v2", "NER_ENGINE": "vllm"})

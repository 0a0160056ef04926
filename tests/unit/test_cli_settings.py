"""``ner-worker settings``, the settings page and ``--help``: they tell the truth about the
settings the worker reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.documents import REPO
from worker.cli import COMMANDS, main
from worker.offline.command import _batch_limit
from worker.settings import SETTINGS_PAGE, SettingsError, load_settings, variable_names
from worker.settings_page import markdown


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("NER_")]:
        monkeypatch.delenv(name)


def test_settings_prints_the_effective_values_masks_secrets_and_marks_what_the_environment_set(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NER_MAX_BATCH_DOCUMENTS", "12")
    monkeypatch.setenv("NER_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("NER_SASL_USERNAME", "alice")
    monkeypatch.setenv("NER_SASL_PASSWORD", "hunter2-in-the-listing")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "NER_MAX_BATCH_DOCUMENTS=12  (set by the environment)" in lines
    assert "NER_SASL_PASSWORD=**********  (set by the environment)" in lines
    assert "NER_ENGINE=hf" in lines  # a default, not marked
    assert "NER_SSL_KEY_PASSWORD=" in lines  # an unset secret shows empty, not masked
    assert "hunter2-in-the-listing" not in out
    assert {line.split("=")[0] for line in lines if not line.startswith(" ")} == {
        name for name in variable_names() if not name.endswith("_FILE")}


@pytest.mark.parametrize("environ", [{"NER_ENGINE": "onnx"}, {"NER_MAX_BACH_DOCUMENTS": "12"}])
def test_a_bad_setting_fails_settings_exactly_as_it_fails_run(
        environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["settings"]) == 2
    listed = capsys.readouterr()
    assert main(["run"]) == 2
    run = capsys.readouterr()
    assert listed.out == "" and listed.err.startswith("ner-worker settings: bad configuration: ")
    assert listed.err.removeprefix("ner-worker settings") == run.err.removeprefix("ner-worker run")


def test_a_misspelt_name_gets_a_suggestion_and_a_far_one_does_not() -> None:
    with pytest.raises(SettingsError, match=r"NER_MAX_BACH_DOCUMENTS \(did you mean NER_MAX_BATCH_DOCUMENTS\?\)"):
        load_settings({"NER_MAX_BACH_DOCUMENTS": "8"})
    with pytest.raises(SettingsError) as refused:
        load_settings({"NER_COLOUR": "blue"})
    assert "did you mean" not in str(refused.value) and SETTINGS_PAGE in str(refused.value)


def test_load_settings_says_which_settings_the_environment_set(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cr3t")
    settings = load_settings({"NER_MAX_BATCH_DOCUMENTS": "256", "NER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                              "NER_SASL_USERNAME": "alice", "NER_SASL_PASSWORD_FILE": str(tmp_path / "password")})
    assert settings.set_by_environment == {"max_batch_documents", "security_protocol", "sasl_username",
                                           "sasl_password"}
    assert load_settings({}).set_by_environment == frozenset()
    assert load_settings({"NER_MAX_BATCH_DOCUMENTS": "256"}) == load_settings({})  # values compare, not origins


def test_annotate_keeps_a_batch_size_the_environment_set_even_when_it_equals_the_default() -> None:
    chosen = load_settings({"NER_MAX_BATCH_DOCUMENTS": "256"})
    assert _batch_limit(None, chosen, "max_batch_documents", 1024) == 256
    assert _batch_limit(None, load_settings({}), "max_batch_documents", 1024) == 1024
    assert _batch_limit(7, chosen, "max_batch_documents", 1024) == 7


def test_the_settings_page_is_generated_from_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    page = (REPO / SETTINGS_PAGE).read_text(encoding="utf-8")
    assert page == markdown(), f"{SETTINGS_PAGE} is out of date: run ner-worker settings --markdown > {SETTINGS_PAGE}"
    for name in variable_names():
        assert f"`{name}`" in page, name
    assert str(REPO) not in page  # the shipped model's default is not a path of this checkout
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == page


@pytest.mark.parametrize("command", ["settings", *COMMANDS])
def test_help_of_every_command_says_what_it_does_its_exit_codes_and_where_settings_are(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: ner-worker {command}")
    assert "Exit status: 0" in text and "2 for " in text
    assert SETTINGS_PAGE in text

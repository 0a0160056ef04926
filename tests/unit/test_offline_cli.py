"""`ner-worker annotate` end to end on the shipped model: the real command as a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from tests.fixtures.documents import (
    MODEL,
    OUTPUT_SCHEMA,
    REPO,
    SAMPLE_TEXTS,
    annotate_in_process,
    output_validator,
    same_entities,
)
from worker.output import OutputControls
from worker.records import Document, output_value

TEXTS = SAMPLE_TEXTS
BAD_LINES = {3: (b'{"text": "cut short', "invalid_json"), 5: (b'{"title": "no text"}', "missing_text"),
             6: (b"\xff\xfe not utf-8", "invalid_utf8"), 8: (b"[1, 2]", "not_an_object")}


def run_annotate(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
                 ) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    environ.update({"NER_MODEL": MODEL, "PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-m", "worker.cli", "annotate", *args], input=stdin, cwd=REPO,
                          env=environ, capture_output=True, timeout=600)


def jsonl_input(path: Path) -> list[tuple[int, dict[str, Any] | None]]:
    """Good documents and the BAD_LINES mixed; returns (line, document or None) in order."""
    lines: list[bytes] = []
    layout: list[tuple[int, dict[str, Any] | None]] = []
    good = 0
    for number in range(1, 11):
        if number in BAD_LINES:
            lines.append(BAD_LINES[number][0])
            layout.append((number, None))
        else:
            document = {"id": f"doc-{number}", "text": TEXTS[good % len(TEXTS)], "meta": {"line": number}}
            good += 1
            lines.append(orjson.dumps(document))
            layout.append((number, document))
    path.write_bytes(b"\r\n".join(lines[:2]) + b"\r\n" + b"\n".join(lines[2:]))  # mixed line ends, no final one
    return layout


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return dict(zip(TEXTS, annotate_in_process(TEXTS), strict=True))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_jsonl_file_becomes_the_stream_output_with_bad_lines_reported(tmp_path: Path,
                                                                        expected: dict[str, Any]) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    layout = jsonl_input(source)
    result = run_annotate(str(source), "-o", str(output), env={"NER_MAX_BATCH_DOCUMENTS": "3"})
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()

    written = read_jsonl(output)
    good = [(line, document) for line, document in layout if document is not None]
    assert [record["ner"]["source"] for record in written] == [{"file": str(source), "line": n} for n, _ in good]
    for record, (_, document) in zip(written, good, strict=True):
        assert document is not None and same_entities(record["entities"], expected[document["text"]])
        # Byte for byte the stream's output record, apart from where it came from and the timings.
        stream_value = orjson.loads(output_value(Document(document["text"], document), record["entities"],
                                                 ner=record["ner"], controls=OutputControls()))
        assert record == stream_value
        for entity in record["entities"]:
            assert record["text"][entity["start"]:entity["end"]] == entity["text"]
        as_from_kafka = {**record, "ner": {**record["ner"], "source": {"topic": "t", "partition": 0, "offset": 0}}}
        jsonschema.validate(as_from_kafka, OUTPUT_SCHEMA)
    assert any(record["entities"] for record in written)

    errors = read_jsonl(Path(f"{output}.errors.jsonl"))
    assert [(e["line"], e["reason"]) for e in errors] == [(n, reason) for n, (_, reason) in sorted(BAD_LINES.items())]
    assert errors[0]["value"] == '{"text": "cut short' and errors[2]["value_base64"]
    for number, (_, reason) in BAD_LINES.items():
        assert f"{source}:{number}: {reason}:" in stderr
    assert "annotated 6 documents" in stderr and "4 bad lines" in stderr and "docs/s" in stderr and "tokens/s" in stderr
    assert "\r" not in stderr  # no progress bar when stderr is not a terminal


def test_plain_text_from_stdin_to_stdout(expected: dict[str, Any]) -> None:
    text = "\n".join([TEXTS[0], "", TEXTS[2]]).encode() + b"\n"
    result = run_annotate("-", "--format", "text", "--quiet", stdin=text)
    assert result.returncode == 0, result.stderr.decode()
    written = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [record["text"] for record in written] == [TEXTS[0], TEXTS[2]]
    assert [record["ner"]["source"]["line"] for record in written] == [1, 3]
    assert same_entities(written[1]["entities"], expected[TEXTS[2]])
    assert "<stdin>:2: empty_value: the record has no value" in result.stderr.decode()


def test_pre_split_words_from_a_file(tmp_path: Path) -> None:
    words = TEXTS[0].split()
    source = tmp_path / "words.jsonl"
    source.write_bytes(orjson.dumps({"words": words}) + b"\n" + orjson.dumps({"tokens": words}) + b"\n")
    result = run_annotate(str(source), "--quiet", env={"NER_WORDS_FIELD": "tokens"})
    assert result.returncode == 0, result.stderr.decode()
    (record,) = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert record["tokens"] == words and record["ner"]["offsets_into"] == "joined_words"
    (want,) = annotate_in_process([tuple(words)])
    assert record["entities"] and same_entities(record["entities"], want)
    bases = [sum(len(word) + 1 for word in words[:index]) for index in range(len(words))]
    for entity in record["entities"]:
        assert " ".join(words)[entity["start"]:entity["end"]] == entity["text"]
        first, last = entity["word_start"], entity["word_end"] - 1
        assert bases[first] <= entity["start"] < bases[first] + len(words[first])
        assert bases[last] < entity["end"] <= bases[last] + len(words[last])
    jsonschema.validate({**record, "ner": {**record["ner"], "source": {"topic": "t", "partition": 0, "offset": 0}}},
                        OUTPUT_SCHEMA)
    assert f"{source}:1: missing_text:" in result.stderr.decode()


def test_progress_bar_with_rate_and_eta_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    jsonl_input(source)
    result = run_annotate(str(source), "-o", str(tmp_path / "out.jsonl"), "--progress", "always")
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    bar = stderr.split("\r")[-1]
    assert "100%" in bar and "6 docs" in bar and "docs/s" in bar and ("ETA" in bar or "elapsed" in bar)


def test_killed_run_resumes_where_it_stopped_and_writes_each_line_once(tmp_path: Path) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    count = 2500
    source.write_bytes(b"\n".join(
        orjson.dumps({"id": n, "text": f"{TEXTS[n % 3]} Number {n}."}) if n % 97 else b"not json"
        for n in range(count)) + b"\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    environ.update({"NER_MODEL": MODEL, "PYTHONPATH": str(REPO), "NER_MAX_BATCH_DOCUMENTS": "16"})
    first = subprocess.Popen([sys.executable, "-m", "worker.cli", "annotate", str(source), "-o", str(output)],
                             cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not output.exists() or output.stat().st_size < 20_000:
        assert first.poll() is None and time.monotonic() < deadline, "the first run ended before it could be killed"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    with output.open("ab") as handle:
        handle.write(b'{"id": "a record cut short by the crash')
    written_before = len(output.read_bytes().splitlines()) - 1

    second = run_annotate(str(source), "-o", str(output))  # large batches again: the rest goes fast
    stderr = second.stderr.decode()
    assert second.returncode == 0, stderr
    assert "resuming after line" in stderr and "dropped an incomplete last record" in stderr

    lines = [record["ner"]["source"]["line"] for record in read_jsonl(output)]
    lines += [record["line"] for record in read_jsonl(Path(f"{output}.errors.jsonl"))]
    assert sorted(lines) == list(range(1, count + 1))  # every line exactly once: none lost, none twice
    assert 0 < written_before < count - count // 97
    ids = [record["id"] for record in read_jsonl(output)]
    assert ids == sorted(ids)  # still in input order

    third = run_annotate(str(source), "-o", str(output))
    assert third.returncode == 0 and f"{count:,} lines already done" in third.stderr.decode()


def test_an_output_of_another_input_is_not_resumed(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_bytes(b'{"entities": [], "ner": {"model": "m", "source": {"file": "other.jsonl", "line": 4}}}\n')
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "x"}\n')
    result = run_annotate(str(source), "-o", str(output))
    assert result.returncode == 2 and "cannot resume" in result.stderr.decode()
    assert "other.jsonl" in result.stderr.decode()


def test_usage_and_settings_errors_name_the_culprit(tmp_path: Path) -> None:
    missing = run_annotate(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such input file" in missing.stderr.decode()
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "x"}\n')
    bad_setting = run_annotate(str(source), env={"NER_MAX_BATCH_DOCUMENTS": "many"})
    assert bad_setting.returncode == 2 and "NER_MAX_BATCH_DOCUMENTS" in bad_setting.stderr.decode()
    same = run_annotate(str(source), "-o", str(source))
    assert same.returncode == 2 and "must differ from the input" in same.stderr.decode()


def test_output_controls_shape_the_written_records(tmp_path: Path, expected: dict[str, Any]) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps({"id": n, "text": text}) for n, text in enumerate(TEXTS)))
    controls = {"NER_OUTPUT_SHAPE": "entities", "NER_ENTITIES_FIELD": "names", "NER_LABELS": "PER,ORG",
                "NER_LABEL_RENAME": "PER=person", "NER_MIN_SCORE": "0.7", "NER_SCORE_DIGITS": "1"}
    result = run_annotate(str(source), "-o", str(output), env=controls)
    assert result.returncode == 0, result.stderr.decode()
    validator = output_validator("entities", "names")
    written = read_jsonl(output)
    assert len(written) == len(TEXTS)
    for line, (record, text) in enumerate(zip(written, TEXTS, strict=True), start=1):
        validator.validate(record)
        assert record["key"] is None and record["ner"]["source"] == {"file": str(source), "line": line}
        wanted = [e for e in expected[text] if e["label"] in ("PER", "ORG") and e["score"] >= 0.7]
        assert [(e["label"], e["start"], e["end"]) for e in record["names"]] == [
            ("person" if e["label"] == "PER" else "ORG", e["start"], e["end"]) for e in wanted]
        assert all(entity["score"] == round(entity["score"], 1) for entity in record["names"])
    assert any(record["names"] for record in written)


def test_a_label_the_model_does_not_have_stops_annotate(tmp_path: Path) -> None:
    result = run_annotate("-", stdin=b'{"text": "Anna"}\n', env={"NER_LABELS": "GPE"})
    assert result.returncode == 2
    assert "NER_LABELS: GPE is not an entity type of the model (its types: " in result.stderr.decode()


def test_a_token_tag_where_an_entity_type_belongs_is_refused(tmp_path: Path) -> None:
    result = run_annotate("-", stdin=b'{"text": "Anna"}\n', env={"NER_LABELS": "B-MISC,I-MISC"})
    assert result.returncode == 2
    assert "NER_LABELS: 'B-MISC' is a token tag, not an entity type; write 'MISC'" in result.stderr.decode()

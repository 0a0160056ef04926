"""Files of `ner-worker annotate`: numbered lines, crash-safe resume points, ordered writes, progress."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from worker.offline.files import (
    ResultFiles,
    ResumeError,
    complete_last_record,
    error_record,
    find_resume_point,
    input_size,
    numbered_lines,
)
from worker.offline.progress import Progress, format_duration, progress_line


def output_line(file: str, line: int, pad: int = 0) -> bytes:
    record = {"text": "x" * pad, "entities": [], "ner": {"model": "m", "source": {"file": file, "line": line}}}
    return orjson.dumps(record) + b"\n"


# --- numbered lines ---------------------------------------------------------------------------


def test_numbered_lines_strip_line_ends_and_count_bytes() -> None:
    data = b'{"a": 1}\r\nplain\n\nlast without newline'
    lines = list(numbered_lines(io.BytesIO(data)))
    assert [(n, line) for n, line, _ in lines] == [
        (1, b'{"a": 1}'), (2, b"plain"), (3, b""), (4, b"last without newline")]
    assert sum(size for _, _, size in lines) == len(data)


def test_input_size_for_files_and_pipes(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"12345")
    with path.open("rb") as handle:
        assert input_size(handle) == 5
    assert input_size(io.BytesIO(b"abc")) is None  # no file descriptor


# --- last record and resume point -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "record", "incomplete"),
    [
        (b"", None, 0),
        (b"partial", None, 7),
        (b"first\n", b"first", 0),
        (b"first\nsecond\n", b"second", 0),
        (b"first\nsecond\nthi", b"second", 3),
    ],
)
def test_complete_last_record(tmp_path: Path, content: bytes, record: bytes | None, incomplete: int) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    assert complete_last_record(path) == (record, incomplete)


def test_complete_last_record_reads_records_longer_than_its_chunk(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    big = b"y" * 200_000
    path.write_bytes(b"a" * 150_000 + b"\n" + big + b"\n" + b"z" * 100_000)
    assert complete_last_record(path) == (big, 100_000)


def test_resume_point_is_the_highest_line_of_both_files_and_drops_a_cut_record(tmp_path: Path) -> None:
    output, errors = tmp_path / "out.jsonl", tmp_path / "out.jsonl.errors.jsonl"
    whole = output_line("in.jsonl", 1) + output_line("in.jsonl", 2)
    cut = output_line("in.jsonl", 4, pad=100)[:-30]
    output.write_bytes(whole + cut)
    errors.write_bytes(error_record("in.jsonl", 3, "invalid_json", "bad", b"{"))
    point = find_resume_point(output, errors, input_name="in.jsonl")
    assert point.last_line == 3
    assert point.dropped_bytes == len(cut)
    assert output.read_bytes() == whole  # the incomplete record is gone, the rest untouched


def test_resume_point_of_a_missing_or_empty_output_is_zero(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    assert find_resume_point(output, None, input_name="in.jsonl").last_line == 0
    output.write_bytes(b"")
    assert find_resume_point(output, tmp_path / "nothing", input_name="in.jsonl").last_line == 0


def test_resume_refuses_an_output_of_another_input(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_bytes(output_line("other.jsonl", 7))
    with pytest.raises(ResumeError, match=r"other\.jsonl"):
        find_resume_point(output, None, input_name="in.jsonl")


def test_resume_refuses_a_file_not_written_by_annotate(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_bytes(b'{"id": 1, "text": "hand written"}\n')
    with pytest.raises(ResumeError, match="--overwrite"):
        find_resume_point(output, None, input_name="in.jsonl")


# --- records and ordered writes ---------------------------------------------------------------


def test_error_record_keeps_the_original_line_as_text_or_base64() -> None:
    text = orjson.loads(error_record("in.jsonl", 5, "invalid_json", "not JSON", b"{oops"))
    assert text == {"file": "in.jsonl", "line": 5, "reason": "invalid_json", "message": "not JSON", "value": "{oops"}
    binary = orjson.loads(error_record("in.jsonl", 6, "invalid_utf8", "bad bytes", b"\xff\xfe"))
    assert binary["value_base64"] == "//4=" and "value" not in binary


class Recorder(io.BytesIO):
    """A file that logs the order of flushes across files."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def flush(self) -> None:
        self.log.append(f"{self.name}:{len(self.getvalue())}")
        super().flush()


def test_an_error_record_is_written_only_after_the_output_before_it_is_flushed() -> None:
    log: list[str] = []
    output, errors = Recorder("out", log), Recorder("err", log)
    files = ResultFiles(output, errors, close_output=False)
    files.document(b'{"n":1}')
    files.error(b'{"line":2}\n')
    assert log[:2] == ["out:8", "err:11"]  # output flushed (8 bytes) before the error record lands


def test_without_an_errors_file_error_records_are_not_written() -> None:
    output = io.BytesIO()
    files = ResultFiles(output, None, close_output=False)
    files.error(b'{"line":2}\n')
    files.document(b"{}")
    files.flush()
    assert output.getvalue() == b"{}\n"


# --- progress ----------------------------------------------------------------------------------


def test_format_duration() -> None:
    assert format_duration(0) == "0:00:00"
    assert format_duration(61.4) == "0:01:01"
    assert format_duration(3 * 3600 + 125) == "3:02:05"


def test_progress_line_with_a_known_size_shows_percent_rate_and_eta() -> None:
    line = progress_line(documents=1500, errors=2, done_bytes=250, total_bytes=1000, elapsed_s=10,
                         rate_bytes_s=25.0, rate_docs_s=150.2)
    assert "25%" in line and "1,500 docs" in line and "2 bad" in line and "150.2 docs/s" in line
    assert "ETA 0:00:30" in line  # 750 bytes left at 25 bytes/s


def test_progress_line_without_a_size_shows_elapsed_time() -> None:
    line = progress_line(documents=3, errors=0, done_bytes=10, total_bytes=None, elapsed_s=75,
                         rate_bytes_s=1.0, rate_docs_s=0.04)
    assert "%" not in line and "ETA" not in line and "0:01:15 elapsed" in line and "bad" not in line


def test_disabled_progress_writes_only_notes() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total_bytes=100, enabled=False)
    progress.advance(documents=5, errors=0, num_bytes=50)
    progress.finish()
    assert stream.getvalue() == ""
    progress.note("in.jsonl:3: invalid_json: not JSON")
    assert stream.getvalue() == "in.jsonl:3: invalid_json: not JSON\n"


def test_enabled_progress_redraws_one_line_and_ends_it() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total_bytes=100, enabled=True)
    progress.advance(documents=5, errors=1, num_bytes=50)
    progress.finish()
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and "50%" in text and "docs/s" in text

import orjson
import pytest

from worker import records
from worker.output import OutputControls
from worker.records import Document, ParseOptions, Rejection, dead_letter_headers, output_value, parse_value
from worker.settings import load_settings

OPTIONS = ParseOptions.from_settings(
    load_settings({"NER_MAX_RECORD_BYTES": "1000", "NER_MAX_TEXT_CHARS": "100", "NER_MAX_JSON_DEPTH": "5"}))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, records.EMPTY_VALUE),
        (b"", records.EMPTY_VALUE),
        (b"\xff\xfe{}", records.INVALID_UTF8),
        (b'{"text": "unterminated', records.INVALID_JSON),
        (b"[1, 2]", records.NOT_AN_OBJECT),
        (b'"just a string"', records.NOT_AN_OBJECT),
        (b'{"title": "no text"}', records.MISSING_TEXT),
        (b'{"text": 42}', records.TEXT_NOT_STRING),
        (b'{"text": null}', records.TEXT_NOT_STRING),
        (b'{"text": "' + b"a" * 101 + b'"}', records.TOO_LARGE),
        (b'{"text": "x", "pad": "' + b"a" * 1000 + b'"}', records.TOO_LARGE),
        (b'{"text": "x", "a": [[[[[[1]]]]]]}', records.TOO_DEEP),
    ],
)
def test_malformed_values_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    result = parse_value(value, OPTIONS)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.message


def test_a_valid_object_keeps_every_field() -> None:
    result = parse_value(b'{"id": 7, "text": "Anna lives in Rome.", "meta": {"lang": "en"}}', OPTIONS)
    assert result == Document("Anna lives in Rome.", {"id": 7, "text": "Anna lives in Rome.", "meta": {"lang": "en"}})


def test_dotted_text_path() -> None:
    options = ParseOptions.from_settings(load_settings({"NER_TEXT_FIELD": "body.content"}))
    assert isinstance(parse_value(b'{"body": {"content": "hi"}}', options), Document)
    assert isinstance(parse_value(b'{"body": "hi"}', options), Rejection)


def test_plain_text_mode_takes_the_whole_value() -> None:
    options = ParseOptions.from_settings(load_settings({"NER_INPUT_FORMAT": "text"}))
    assert parse_value("not json: Zoë".encode(), options) == Document("not json: Zoë", None)


def test_output_adds_entities_and_ner_and_keeps_the_rest() -> None:
    document = Document("Anna", {"id": 1, "text": "Anna", "entities": "old"})
    entity = {"label": "PER", "text": "Anna", "start": 0, "end": 4, "score": 0.9}
    body = orjson.loads(output_value(document, [entity], ner={"model": "m"}, controls=OutputControls()))
    assert body == {"id": 1, "text": "Anna", "entities": [entity], "ner": {"model": "m"}}


def test_dead_letter_headers_keep_the_originals_and_add_the_reason() -> None:
    headers = dead_letter_headers(
        [("trace", b"abc")], Rejection("invalid_json", "bad"), topic="t", partition=2, offset=9
    )
    as_dict = dict(headers)
    assert headers[0] == ("trace", b"abc")
    assert as_dict["ner.error.reason"] == b"invalid_json"
    assert as_dict["__connect.errors.partition"] == b"2"
    assert as_dict["__connect.errors.offset"] == b"9"


def test_ner_block_names_model_source_and_engine_time() -> None:
    block = records.ner_block("tiny", {"topic": "in", "partition": 2, "offset": 7}, document_engine_seconds=0.0125004)
    assert block == {"model": "tiny", "source": {"topic": "in", "partition": 2, "offset": 7},
                     "timings": {"engine_ms": 12.5}}


def test_interleave_puts_results_back_between_rejections() -> None:
    bad = records.Rejection("invalid_json", "x")
    assert records.interleave([bad, "a", bad, "b"], ["A", "B"]) == [bad, "A", bad, "B"]


def test_interleave_refuses_a_count_mismatch() -> None:
    import pytest

    bad = records.Rejection("invalid_json", "x")
    with pytest.raises(ValueError, match="fewer"):
        records.interleave([bad, "a", "b"], ["A"])
    with pytest.raises(ValueError, match="more"):
        records.interleave(["a"], ["A", "B"])

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


def test_words_stand_in_for_a_missing_text() -> None:
    result = parse_value(b'{"id": 1, "words": ["Anna", "lives", "in", "Rome", "."]}', OPTIONS)
    assert isinstance(result, Document)
    assert result.text == "Anna lives in Rome ."
    assert result.words == ("Anna", "lives", "in", "Rome", ".")
    assert result.tokenizer_input == result.words
    assert result.body == {"id": 1, "words": ["Anna", "lives", "in", "Rome", "."]}


def test_the_text_wins_over_words_and_text_documents_have_no_words() -> None:
    result = parse_value(b'{"text": "Anna", "words": ["Rome"]}', OPTIONS)
    assert isinstance(result, Document) and result.text == "Anna" and result.words is None
    assert result.tokenizer_input == "Anna"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b'{"words": "Anna lives"}', "the field 'words' is a string, not a list of strings"),
        (b'{"words": ["Anna", 3]}', "item 1 of the field 'words' is a number, not a string"),
        (b'{"words": ["Anna", null]}', "item 1 of the field 'words' is a null, not a string"),
    ],
)
def test_words_that_are_not_a_list_of_strings_are_rejected(value: bytes, message: str) -> None:
    result = parse_value(value, OPTIONS)
    assert result == Rejection(records.WORDS_NOT_STRINGS, message)


def test_joined_words_count_against_the_text_limit() -> None:
    result = parse_value(orjson.dumps({"words": ["a" * 50, "b" * 50]}), OPTIONS)
    assert isinstance(result, Rejection) and result.reason == records.TOO_LARGE
    assert "101 characters" in result.message


def test_the_words_field_is_a_setting_and_empty_turns_it_off() -> None:
    named = ParseOptions.from_settings(load_settings({"NER_WORDS_FIELD": "doc.tokens"}))
    assert parse_value(b'{"doc": {"tokens": ["a", "b"]}}', named) == Document(
        "a b", {"doc": {"tokens": ["a", "b"]}}, words=("a", "b"))
    off = ParseOptions.from_settings(load_settings({"NER_WORDS_FIELD": ""}))
    result = parse_value(b'{"words": ["a"]}', off)
    assert result == Rejection(records.MISSING_TEXT, "the object has no field 'text'")
    missing = parse_value(b'{"title": "a"}', OPTIONS)
    assert missing == Rejection(records.MISSING_TEXT, "the object has no field 'text' (nor 'words')")


def test_the_output_of_words_says_the_offsets_index_the_joined_words() -> None:
    document = Document("Anna lives", {"words": ["Anna", "lives"]}, words=("Anna", "lives"))
    entity = {"label": "PER", "text": "Anna", "start": 0, "end": 4, "score": 0.9, "word_start": 0, "word_end": 1}
    body = orjson.loads(output_value(document, [entity], ner={"model": "m"}, controls=OutputControls()))
    assert body == {"words": ["Anna", "lives"], "entities": [entity],
                    "ner": {"model": "m", "offsets_into": records.JOINED_WORDS}}

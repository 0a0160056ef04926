"""The output controls: minimum score, label allow-list and renames, score rounding, the
entities-only shape and the field name, and each document's share of the engine time."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from worker.annotator import Annotator
from worker.bundled_model import TINY_NER_PATH
from worker.output import EntityControls, OutputControls
from worker.records import Document, engine_share, ner_block, output_value
from worker.settings import SettingsError, load_settings
from worker.text.decode import Entity
from worker.text.schemes import parse_scheme

BIO = parse_scheme({0: "O", 1: "B-PER", 2: "I-PER", 3: "B-ORG", 4: "I-ORG", 5: "B-LOC", 6: "I-LOC"})
NER = {"model": "m", "source": {"topic": "in", "partition": 0, "offset": 3}}


def entity(label: str, score: float, start: int = 0) -> Entity:
    return {"label": label, "text": "x", "start": start, "end": start + 1, "score": score}


def controls(**environ: str) -> EntityControls:
    settings = load_settings({f"NER_{name.upper()}": value for name, value in environ.items()})
    return OutputControls.from_settings(settings).for_model(BIO, ("O",))


# --- settings: refused at start, naming the setting ---------------------------------------------


@pytest.mark.parametrize(("environ", "named", "hint"), [
    ({"NER_LABELS": "PER,B-MISC"}, "NER_LABELS", "'MISC'"),
    ({"NER_LABELS": "I-MISC"}, "NER_LABELS", "'MISC'"),
    ({"NER_LABEL_RENAME": "B-PER=person"}, "NER_LABEL_RENAME", "'PER'"),
    ({"NER_LABEL_RENAME": "PER"}, "NER_LABEL_RENAME", "MODEL=OUTPUT"),
    ({"NER_LABEL_RENAME": "PER=person=human"}, "NER_LABEL_RENAME", "MODEL=OUTPUT"),
    ({"NER_LABEL_RENAME": "=person"}, "NER_LABEL_RENAME", "MODEL=OUTPUT"),
    ({"NER_LABEL_RENAME": "PER=person,PER=human"}, "NER_LABEL_RENAME", "renamed twice"),
    ({"NER_MIN_SCORE": "1.5"}, "NER_MIN_SCORE", "<= 1"),
    ({"NER_SCORE_DIGITS": "-1"}, "NER_SCORE_DIGITS", ">= 0"),
    ({"NER_OUTPUT_SHAPE": "entities-only"}, "NER_OUTPUT_SHAPE", "document, entities"),
    ({"NER_ENTITIES_FIELD": "ner"}, "NER_ENTITIES_FIELD", "taken"),
    ({"NER_ENTITIES_FIELD": "key"}, "NER_ENTITIES_FIELD", "taken"),
    ({"NER_ENTITIES_FIELD": " "}, "NER_ENTITIES_FIELD", "empty"),
    ({"NER_ENTITIES_FIELD": "body", "NER_TEXT_FIELD": "body"}, "NER_ENTITIES_FIELD", "NER_TEXT_FIELD"),
    ({"NER_WORDS_FIELD": "text"}, "NER_WORDS_FIELD", "NER_TEXT_FIELD"),
    ({"NER_WORDS_FIELD": "entities"}, "NER_WORDS_FIELD", "NER_ENTITIES_FIELD"),
])
def test_a_bad_output_control_fails_at_start_naming_it(environ: dict[str, str], named: str, hint: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert str(caught.value).startswith(named + ":"), caught.value
    assert hint in str(caught.value)


def test_the_controls_are_read_from_the_environment() -> None:
    settings = load_settings({"NER_MIN_SCORE": "0.75", "NER_LABELS": "PER, ORG", "NER_SCORE_DIGITS": "2",
                              "NER_LABEL_RENAME": "PER=person, ORG = organization",
                              "NER_OUTPUT_SHAPE": "entities", "NER_ENTITIES_FIELD": "found"})
    assert OutputControls.from_settings(settings) == OutputControls(
        min_score=0.75, labels=frozenset({"PER", "ORG"}), renames=(("PER", "person"), ("ORG", "organization")),
        score_digits=2, shape="entities", entities_field="found", text_field="text")


def test_defaults_keep_every_entity_and_round_to_four_digits() -> None:
    assert OutputControls.from_settings(load_settings({})) == OutputControls()
    kept = controls().apply([entity("PER", 0.9990530610084534), entity("ORG", 0.01, 2)])
    assert kept == [entity("PER", 0.9991), entity("ORG", 0.01, 2)]
    assert orjson.dumps(kept[0]["score"]) == b"0.9991"  # no float noise in the JSON


# --- against the model's labels, when the engine loads -------------------------------------------


@pytest.mark.parametrize(("environ", "named", "unknown"), [
    ({"NER_LABELS": "PER,MISC"}, "NER_LABELS", "MISC is not an entity type"),
    ({"NER_LABELS": "O"}, "NER_LABELS", "O is not an entity type"),
    ({"NER_LABEL_RENAME": "PER=person,DATE=date,MONEY=money"}, "NER_LABEL_RENAME", "DATE, MONEY are not entity types"),
])
def test_a_label_the_model_does_not_have_is_refused(environ: dict[str, str], named: str, unknown: str) -> None:
    settings = load_settings(environ)
    with pytest.raises(SettingsError) as caught:
        OutputControls.from_settings(settings).for_model(BIO, ("O",))
    assert str(caught.value) == f"{named}: {unknown} of the model (its types: PER, ORG, LOC)"


def test_the_annotator_refuses_labels_of_another_model_when_it_loads() -> None:
    settings = load_settings({"NER_MODEL": str(TINY_NER_PATH), "NER_LABELS": "PER,PERSON"})
    with pytest.raises(SettingsError, match=r"^NER_LABELS: PERSON is not an entity type of the model \(its types: "):
        Annotator.from_settings(settings)


@pytest.mark.parametrize("environ", [{}, {"NER_SCORE_DIGITS": "2"}, {"NER_SCORE_DIGITS": "0"},
                                     {"NER_MIN_SCORE": "0.4"}, {"NER_LABELS": "PER"}])
def test_the_annotator_gives_the_entities_the_controls_give_the_decoders(environ: dict[str, str]) -> None:
    # With rounding alone (the defaults) the decoder rounds a whole batch's scores in one pass;
    # the entities are those of the controls applied to each document's decoded entities.
    import numpy as np

    from tests.unit.text.helpers import ID2LABEL, wordpiece
    from worker.records import ParseOptions
    from worker.text.decode import EntityDecoder
    from worker.text.tokenize import DocumentTokenizer, EncodedText

    tokenizer = DocumentTokenizer(wordpiece(), max_length=16, stride=4, max_document_tokens=1000)
    decoder = EntityDecoder(ID2LABEL)
    settings = load_settings(environ)
    bound = OutputControls.from_settings(settings).for_model(decoder.scheme, decoder.ignore_labels)
    annotator = Annotator(None, tokenizer, decoder, max_entities=1000,  # type: ignore[arg-type]
                          parse=ParseOptions.from_settings(settings), controls=bound)
    texts = ["barack obama visited paris and new york city", "the microsoft playing in paris " * 5, "zoe mullers"]
    documents = [doc for doc in tokenizer.encode(texts) if isinstance(doc, EncodedText)]
    rng = np.random.default_rng(5)
    scores = [[rng.dirichlet(np.full(len(ID2LABEL), 0.2), size=len(window)).astype(np.float32)
               for window in doc.windows] for doc in documents]
    want = [bound.apply(decoder.decode(doc, doc_scores)) for doc, doc_scores in zip(documents, scores, strict=True)]
    assert sum(map(len, want)) >= 5
    assert annotator.entities(documents, [s for doc_scores in scores for s in doc_scores]) == want


# --- each control on entities ---------------------------------------------------------------------


def test_minimum_score_drops_entities_below_it_and_keeps_those_at_it() -> None:
    found = [entity("PER", 0.49, 0), entity("ORG", 0.5, 2), entity("LOC", 0.97, 4)]
    assert [e["score"] for e in controls(min_score="0.5").apply(found)] == [0.5, 0.97]


def test_minimum_score_compares_the_unrounded_score() -> None:
    # 0.49996 rounds to 0.5 but is below 0.5: it goes.
    assert controls(min_score="0.5").apply([entity("PER", 0.49996)]) == []


def test_allow_list_keeps_only_the_listed_types() -> None:
    found = [entity("PER", 0.9, 0), entity("ORG", 0.9, 2), entity("LOC", 0.9, 4)]
    assert [e["label"] for e in controls(labels="LOC,PER").apply(found)] == ["PER", "LOC"]


def test_rename_maps_types_and_leaves_the_others() -> None:
    found = [entity("PER", 0.9, 0), entity("ORG", 0.9, 2), entity("LOC", 0.9, 4)]
    renamed = controls(label_rename="PER=person,ORG=organization").apply(found)
    assert [e["label"] for e in renamed] == ["person", "organization", "LOC"]


def test_allow_list_names_the_model_types_before_renaming() -> None:
    found = [entity("PER", 0.9, 0), entity("ORG", 0.9, 2)]
    assert [e["label"] for e in controls(labels="PER", label_rename="PER=person").apply(found)] == ["person"]


def test_with_aggregation_none_the_controls_act_on_the_type_inside_each_tag() -> None:
    # aggregation "none" reports tags (B-PER, I-PER): the prefix stays, the type is renamed.
    found = [entity("B-PER", 0.9, 0), entity("I-PER", 0.9, 1), entity("B-ORG", 0.9, 3)]
    kept = controls(labels="PER", label_rename="PER=person").apply(found)
    assert [e["label"] for e in kept] == ["B-person", "I-person"]


def test_plain_label_models_are_controlled_too() -> None:
    plain = parse_scheme({0: "O", 1: "PER", 2: "ORG"})
    bound = OutputControls(labels=frozenset({"ORG"}), renames=(("ORG", "org"),)).for_model(plain, ("O",))
    assert [e["label"] for e in bound.apply([entity("PER", 0.9, 0), entity("ORG", 0.9, 2)])] == ["org"]


@pytest.mark.parametrize(("digits", "want"), [(0, 1.0), (2, 0.67), (4, 0.6667), (9, 0.666666667)])
def test_scores_are_rounded_to_the_configured_digits(digits: int, want: float) -> None:
    (kept,) = controls(score_digits=str(digits)).apply([entity("PER", 2 / 3)])
    assert kept["score"] == want
    assert isinstance(kept["score"], float)


# --- the output record ----------------------------------------------------------------------------


def test_document_shape_keeps_the_input_and_names_the_entities_field() -> None:
    document = Document("Anna", {"id": 1, "text": "Anna"})
    found = [entity("PER", 0.9)]
    body = orjson.loads(output_value(document, found, ner=NER, controls=OutputControls(entities_field="found")))
    assert body == {"id": 1, "text": "Anna", "found": found, "ner": NER}


def test_document_shape_of_plain_text_puts_the_text_under_the_text_field() -> None:
    body = orjson.loads(output_value(Document("Anna", None), [], ner=NER, controls=OutputControls(text_field="body")))
    assert body == {"body": "Anna", "entities": [], "ner": NER}


@pytest.mark.parametrize(("key", "want"), [
    (b"doc-7", {"key": "doc-7"}),
    (None, {"key": None}),
    (b"\xff\x00k", {"key": None, "key_base64": "/wBr"}),
])
def test_entities_only_shape_has_key_entities_and_ner_without_the_document(key: bytes | None,
                                                                           want: dict[str, Any]) -> None:
    document = Document("Anna met Bo", {"id": 1, "text": "Anna met Bo", "meta": {"n": 1}})
    found = [entity("PER", 0.9)]
    value = output_value(document, found, ner=NER, key=key,
                         controls=OutputControls(shape="entities", entities_field="found"))
    assert orjson.loads(value) == {**want, "found": found, "ner": NER}


# --- ner.timings: each document's share -----------------------------------------------------------


def test_engine_time_is_shared_by_tokens_and_the_shares_add_up() -> None:
    tokens = [10, 30, 60]
    shares = [engine_share(0.2, n, sum(tokens)) for n in tokens]
    assert shares == pytest.approx([0.02, 0.06, 0.12])
    assert math.isclose(sum(shares), 0.2)
    assert engine_share(0.2, 0, 0) == 0.0  # an empty batch has nothing to share


def test_ner_block_carries_the_document_share_in_milliseconds() -> None:
    block = ner_block("tiny", {"file": "in.jsonl", "line": 3},
                      document_engine_seconds=engine_share(0.0125, 25, 100))
    assert block == {"model": "tiny", "source": {"file": "in.jsonl", "line": 3},
                     "timings": {"engine_ms": 3.125}}

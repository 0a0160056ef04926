import numpy as np
import pytest

from tests.unit.text.helpers import probabilities
from worker.text.aggregate import TokenScores, spans_of_sequences
from worker.text.decode import EntityDecoder, LabelSchemeError
from worker.text.schemes import parse_scheme

BIOES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
BILOU = ["O", "B-PER", "I-PER", "L-PER", "U-PER", "B-LOC", "I-LOC", "L-LOC", "U-LOC"]
IO = ["O", "I-PER", "I-LOC"]
PLAIN = ["O", "PER", "LOC", "WORK-OF-ART"]
BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.mark.parametrize(
    ("labels", "name"),
    [(BIO, "BIO"), (BIOES, "BIOES"), (BILOU, "BILOU"), (IO, "IO"), (PLAIN, "plain"), (["LABEL_0", "LABEL_1"], "plain")],
)
def test_scheme_is_read_from_id2label(labels, name):
    assert parse_scheme(dict(enumerate(labels))).name == name


@pytest.mark.parametrize(
    ("id2label", "message"),
    [
        ({0: "O", 1: "B-PER", 2: "I-PER", 3: "MISC"}, "plain labels: MISC"),
        ({0: "O", 1: "E-PER", 2: "L-LOC"}, "BIOES .* and BILOU .*: E-PER, L-LOC"),
        ({0: "O", 2: "B-PER"}, "class ids 0..n-1"),
        ({"zero": "O"}, "class ids 0..n-1"),
        ({}, "class ids 0..n-1"),
        ({0: "O", 1: ""}, "empty or non-string labels: ''"),
    ],
)
def test_labels_that_are_not_understood_fail_at_start_naming_them(id2label, message):
    with pytest.raises(LabelSchemeError, match=message):
        EntityDecoder(id2label)


def test_plain_labels_are_accepted_next_to_prefixed_ones_when_ignored():
    scheme = parse_scheme({0: "O", 1: "B-PER", 2: "I-PER", 3: "X"}, ignore_labels=["O", "X"])
    assert scheme.name == "BIO"


def test_string_class_ids_from_json_configs_are_accepted():
    assert parse_scheme({"0": "O", "1": "B-PER"}).labels == ("O", "B-PER")  # type: ignore[dict-item]


def groups(names, tags):
    """Decode one token per tag with ``simple``: (type, first token, stop token) of each entity."""
    scheme = parse_scheme(dict(enumerate(names)))
    result = spans_of_sequences(
        TokenScores.of(probabilities(tags, names=names)), np.arange(len(tags)) == 0, None,
        strategy="simple", scheme=scheme,
        ignored_labels=np.array([n == "O" for n in scheme.labels]),
        ignored_types=np.array([t == "O" for t in scheme.types]),
    )
    return [(scheme.types[label], int(first), int(last) + 1)
            for label, first, last in zip(result.classes, result.first_tokens, result.last_tokens, strict=True)]


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),  # two B- are two entities
        (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),  # I- without B- opens an entity (pipeline repair)
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # a type change closes the entity
        (["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),  # IOB1: B- separates neighbours
    ],
)
def test_bio_and_iob1(tags, expected):
    assert groups(BIO, tags) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "E-PER", "S-LOC"], [("PER", 0, 3), ("LOC", 3, 4)]),
        (["S-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),  # singles never merge
        (["B-PER", "E-PER", "I-PER", "E-PER"], [("PER", 0, 2), ("PER", 2, 4)]),  # E- closes
        (["O", "E-PER"], [("PER", 1, 2)]),  # E- without B- is a one-token entity
        (["O", "I-PER", "E-PER"], [("PER", 1, 3)]),  # I- without B- opens, E- closes
        (["B-PER", "I-PER", "O"], [("PER", 0, 2)]),  # an entity never closed still counts
        (["B-PER", "E-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
        (["S-PER", "E-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    ],
)
def test_bioes_with_repairs(tags, expected):
    assert groups(BIOES, tags) == expected
    bilou = [t.replace("E-", "L-").replace("S-", "U-") for t in tags]
    assert groups(BILOU, bilou) == expected


def test_io_and_plain_labels_group_runs_of_the_same_label():
    assert groups(IO, ["I-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    tags = ["PER", "PER", "WORK-OF-ART", "O", "LOC"]
    assert groups(PLAIN, tags) == [("PER", 0, 2), ("WORK-OF-ART", 2, 3), ("LOC", 4, 5)]

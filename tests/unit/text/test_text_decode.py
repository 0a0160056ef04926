import numpy as np
import pytest

from tests.parity.zoo import tokenizer as zoo_tokenizer
from tests.unit.text.helpers import ID2LABEL, encode, window_scores
from worker.text.decode import EntityDecoder


def spans(entities):
    return [(e["label"], e["text"], e["start"], e["end"]) for e in entities]


def decode(text, labels, aggregation="simple", **kwargs):
    encoded = encode(text)
    scores = window_scores(encoded, labels, confidence=kwargs.pop("confidence", None))
    return EntityDecoder(ID2LABEL, aggregation=aggregation, **kwargs).decode(encoded, scores)


def test_simple_groups_bio_tags_into_entities_with_exact_offsets():
    text = "Barack Obama visited New York city"
    entities = decode(text, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"])
    assert spans(entities) == [("PER", "Barack Obama", 0, 12), ("LOC", "New York city", 21, 34)]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    assert entities[0]["score"] == pytest.approx(0.9)


def test_none_reports_every_token_with_its_full_label():
    entities = decode("Barack Obama visited", ["B-PER", "I-PER", "O"], aggregation="none")
    assert spans(entities) == [("B-PER", "Barack", 0, 6), ("I-PER", "Obama", 7, 12)]


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("simple", [("ORG", "micro", 0, 5), ("PER", "soft", 5, 9)]),  # a word split in two
        ("first", [("ORG", "microsoft", 0, 9)]),  # the first token's label
        ("max", [("PER", "microsoft", 0, 9)]),  # the most confident token's label
        ("average", [("PER", "microsoft", 0, 9)]),  # the argmax of the mean score vector
    ],
)
def test_word_strategies_never_split_a_word(aggregation, expected):
    entities = decode("microsoft", ["B-ORG", "I-PER"], aggregation=aggregation, confidence=[0.6, 0.95])
    assert spans(entities) == expected


def test_average_scores_are_the_mean_probability_of_the_winning_label():
    (entity,) = decode("microsoft", ["B-ORG", "I-PER"], aggregation="average", confidence=[0.6, 0.95])
    assert entity["score"] == pytest.approx((0.95 + 0.4 / 8) / 2)


def test_group_score_is_the_mean_of_its_items():
    (entity,) = decode("new york", ["B-LOC", "I-LOC"], confidence=[0.5, 0.9])
    assert entity["score"] == pytest.approx(0.7)


def test_ignore_labels_filters_entity_types_and_full_labels_for_none():
    text = "Barack Obama visited Paris"
    labels = ["B-PER", "I-PER", "O", "B-LOC"]
    assert spans(decode(text, labels, ignore_labels=["O", "LOC"])) == [("PER", "Barack Obama", 0, 12)]
    kept = decode(text, labels, aggregation="none", ignore_labels=["O", "B-LOC"])
    assert [e["label"] for e in kept] == ["B-PER", "I-PER"]
    with_outside = decode("visited Paris", ["O", "B-LOC"], ignore_labels=[])
    assert spans(with_outside) == [("O", "visited", 0, 7), ("LOC", "Paris", 8, 13)]


def test_logits_are_turned_into_probabilities():
    encoded = encode("Barack Obama")
    probabilities = window_scores(encoded, ["B-PER", "I-PER"])
    logits = [np.log(p) + 3.0 for p in probabilities]
    from_logits = EntityDecoder(ID2LABEL, scores="logits").decode(encoded, logits)
    from_probabilities = EntityDecoder(ID2LABEL).decode(encoded, probabilities)
    assert spans(from_logits) == spans(from_probabilities) == [("PER", "Barack Obama", 0, 12)]
    assert from_logits[0]["score"] == pytest.approx(0.9, abs=1e-6)


def test_empty_and_whitespace_only_documents_have_no_entities():
    for text in ("", "   \n\t"):
        encoded = encode(text)
        assert len(encoded.windows) == 1
        assert EntityDecoder(ID2LABEL).decode(encoded, window_scores(encoded, [])) == []


def test_overlapping_windows_take_each_token_from_the_window_with_most_context():
    # 10 tokens, 6 content tokens per window, stride 2: windows [0, 6) and [4, 10).
    encoded = encode("a b c d e f g h i j", max_length=8, stride=2)
    assert [encoded.window_range(i) for i in range(len(encoded.windows))] == [(0, 6), (4, 10)]
    labels = ["O"] * 10
    disagreement = {(0, 4): "B-PER", (0, 5): "B-PER", (1, 4): "B-LOC", (1, 5): "B-LOC"}
    scores = window_scores(encoded, labels, per_window=disagreement)
    entities = EntityDecoder(ID2LABEL).decode(encoded, scores)
    # Token 4 is 1 token from window 0's cut but on window 1's cut; token 5 the other way round.
    assert spans(entities) == [("PER", "e", 8, 9), ("LOC", "f", 10, 11)]


def test_entity_across_a_window_cut_comes_back_whole():
    encoded = encode("a b c d e f g h i j", max_length=8, stride=2)
    labels = ["O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O"]
    entities = EntityDecoder(ID2LABEL).decode(encoded, window_scores(encoded, labels))
    assert spans(entities) == [("ORG", "d e f g", 6, 13)]


def test_longest_merge_reproduces_the_pipeline_choice():
    encoded = encode("a b c d e f g h i j", max_length=8, stride=2)
    labels = ["O"] * 10
    # Window 0 sees "e f" as one entity, window 1 sees "e" alone: the longer span wins.
    disagreement = {(0, 4): "B-PER", (0, 5): "I-PER", (1, 4): "B-LOC", (1, 5): "O"}
    scores = window_scores(encoded, labels, per_window=disagreement)
    entities = EntityDecoder(ID2LABEL, window_merge="longest").decode(encoded, scores)
    assert spans(entities) == [("PER", "e f", 8, 11)]


def test_spans_never_start_or_end_with_whitespace():
    tokenizer = zoo_tokenizer("xlm-roberta")  # SentencePiece offsets include the leading space
    text = "I live in  Paris"
    encoded = encode(text, tokenizer=tokenizer, max_length=64, stride=8)
    covering = [i for i in range(encoded.num_tokens) if encoded.ends[i] > text.index("Paris")]
    assert text[encoded.starts[covering[0]]].isspace()
    labels = ["B-LOC" if i == covering[0] else "I-LOC" if i in covering else "O" for i in range(encoded.num_tokens)]
    entities = EntityDecoder(ID2LABEL).decode(encoded, window_scores(encoded, labels))
    assert spans(entities) == [("LOC", "Paris", 11, 16)]


def test_pieces_of_one_character_never_yield_overlapping_entities():
    tokenizer = zoo_tokenizer("roberta")  # byte-level BPE splits a rare character into byte tokens
    text = "hi 中 there"
    encoded = encode(text, tokenizer=tokenizer, max_length=64, stride=8)
    robot = [i for i in range(encoded.num_tokens) if encoded.starts[i] <= 3 < encoded.ends[i]]
    assert len(robot) > 1
    labels = ["O"] * encoded.num_tokens
    labels[robot[0]], labels[robot[1]] = "B-PER", "B-LOC"
    for aggregation in ("simple", "none"):
        entities = EntityDecoder(ID2LABEL, aggregation=aggregation).decode(encoded, window_scores(encoded, labels))
        assert [(e["text"], e["start"], e["end"]) for e in entities] == [("中", 3, 4)]
        assert entities[0]["label"] in ("PER", "B-PER")
    (word,) = EntityDecoder(ID2LABEL, aggregation="first").decode(encoded, window_scores(encoded, labels))
    assert (word["label"], word["text"]) == ("PER", "中")


def test_wrong_score_shapes_are_refused_with_a_clear_message():
    encoded = encode("Barack Obama")
    decoder = EntityDecoder(ID2LABEL)
    with pytest.raises(ValueError, match="score matrices for 1 windows"):
        decoder.decode(encoded, [])
    with pytest.raises(ValueError, match="window of 4 tokens and 9 labels"):
        decoder.decode(encoded, [np.zeros((4, 3), np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        decoder.decode(encoded, [np.full((4, 9), np.nan, np.float32)])


def test_bad_options_fail_at_construction_naming_the_option():
    with pytest.raises(ValueError, match="aggregation"):
        EntityDecoder(ID2LABEL, aggregation="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores"):
        EntityDecoder(ID2LABEL, scores="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ignore_labels"):
        EntityDecoder(ID2LABEL, ignore_labels="O")

"""Pre-split input (the pipeline's ``is_split_into_words``): a tuple of words is tokenized word
by word and read as the words joined by single spaces."""

import pytest

from tests.parity.corpus import corpus
from tests.parity.zoo import FAMILIES, tokenizer
from tests.unit.text.helpers import ID2LABEL, window_scores, wordpiece
from worker.text.decode import EntityDecoder
from worker.text.tokenize import DocumentTokenizer, EncodedText, JoinedWords

WORD_LISTS = [tuple(text.split()) for text in corpus(40, long_every=6)]


def encode_words(words, *, max_length=16, stride=4, hf=None):
    documents = DocumentTokenizer(hf or wordpiece(), max_length=max_length, stride=stride, max_document_tokens=10_000)
    (encoded,) = documents.encode([tuple(words)])
    assert isinstance(encoded, EncodedText)
    return encoded


@pytest.mark.parametrize("family", FAMILIES)
def test_words_get_the_tokenizers_pretokenized_windows_and_offsets_into_the_joined_words(family):
    hf = tokenizer(family)
    documents = DocumentTokenizer(hf, max_length=32, stride=8, max_document_tokens=100_000)
    for words, encoded in zip(WORD_LISTS, documents.encode(WORD_LISTS), strict=True):
        assert isinstance(encoded, EncodedText)
        assert encoded.text == " ".join(words)
        reference = hf(list(words), is_split_into_words=True, truncation=True, max_length=32, stride=8,
                       return_overflowing_tokens=True)
        assert encoded.windows == reference["input_ids"]
        plain = hf(list(words), is_split_into_words=True, add_special_tokens=False, return_offsets_mapping=True)
        bases = [sum(len(word) + 1 for word in words[:index]) for index in range(len(words))]
        word_ids = plain.word_ids()
        expected = [(start + bases[w], end + bases[w]) for (start, end), w in zip(plain["offset_mapping"], word_ids,
                                                                                   strict=True)]
        assert list(zip(encoded.starts.tolist(), encoded.ends.tolist(), strict=True)) == expected
        assert encoded.word_index is not None and encoded.word_index.tolist() == word_ids


def test_a_batch_may_mix_texts_and_words_and_keeps_its_order():
    documents = DocumentTokenizer(wordpiece(), max_length=16, stride=4, max_document_tokens=100)
    text, words, other = documents.encode(["paris", ("new", "york"), "obama"])
    assert isinstance(text, EncodedText) and isinstance(words, EncodedText) and isinstance(other, EncodedText)
    assert (text.text, words.text, other.text) == ("paris", "new york", "obama")
    assert text.word_index is None and words.word_index is not None
    assert words.starts.tolist() == [0, 4] and words.ends.tolist() == [3, 8]


def test_empty_words_keep_their_place_in_the_joined_text():
    encoded = encode_words(["paris", "", "obama"])
    assert encoded.text == "paris  obama"
    assert encoded.starts.tolist() == [0, 7] and encoded.word_index.tolist() == [0, 2]
    assert isinstance(encoded.encoding, JoinedWords)
    assert encoded.encoding.word_span(7, 12) == (2, 3)
    assert encoded.encoding.word_span(0, 12) == (0, 3)


@pytest.mark.parametrize(("aggregation", "label"), [("first", "LOC"), ("max", "LOC"), ("average", "PER")])
def test_word_strategies_take_the_given_words_as_words(aggregation, label):
    """``u.s.`` is one given word that the tokenizer cuts into four word-like pieces: by default
    the words decide (one entity); the pipeline's rules see four words in the joined text."""
    encoded = encode_words(["u.s.", "visited", "paris"])
    labels = ["B-LOC", "I-PER", "I-PER", "I-PER", "O", "B-LOC"]
    assert len(labels) == encoded.num_tokens
    scores = window_scores(encoded, labels, confidence=[0.95, 0.6, 0.6, 0.6, 0.9, 0.9])
    ours = EntityDecoder(ID2LABEL, aggregation=aggregation).decode(encoded, scores)
    assert [(e["label"], e["text"], e["start"], e["end"]) for e in ours] == [
        (label, "u.s.", 0, 4), ("LOC", "paris", 13, 18)]
    pipeline = EntityDecoder(ID2LABEL, aggregation=aggregation, word_rules="pipeline").decode(encoded, scores)
    assert [e["text"] for e in pipeline] != ["u.s.", "paris"]


def test_a_text_of_the_same_characters_is_cut_by_the_tokenizers_rules():
    documents = DocumentTokenizer(wordpiece(), max_length=16, stride=4, max_document_tokens=100)
    (encoded,) = documents.encode(["u.s. visited paris"])
    assert isinstance(encoded, EncodedText)
    scores = window_scores(encoded, ["B-LOC", "I-PER", "I-PER", "I-PER", "O", "B-LOC"],
                           confidence=[0.95, 0.6, 0.6, 0.6, 0.9, 0.9])
    entities = EntityDecoder(ID2LABEL, aggregation="first").decode(encoded, scores)
    assert [e["text"] for e in entities] != ["u.s.", "paris"]

"""Cases where the reference pipeline is wrong, and our decoder is right.

Each test feeds the pipeline's own ``postprocess`` and our decoder the same per-token scores
(chosen so that the case shows), asserts what the pipeline answers, then what we answer.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from transformers import pipeline

from tests.parity.zoo import tokenizer as zoo_tokenizer
from tests.parity.zoo import zoo
from tests.unit.text.helpers import BIO, probabilities, wordpiece
from worker.text.decode import EntityDecoder
from worker.text.tokenize import DocumentTokenizer, EncodedText

pytestmark = pytest.mark.parity


def answers(hf_tokenizer, text: str, label_of: Callable[[EncodedText, int], str], strategy: str, *,
            names: Sequence[str] = BIO, max_length: int = 64, stride: int | None = None):
    """(pipeline entities, our entities) when token ``i`` is scored ``label_of(encoded, i)``."""
    # Copies: the zoo's tokenizers and models are cached and shared with other tests.
    model = copy.deepcopy(zoo("bert-cased").model)  # only its config travels; the scores below replace its output
    model.config.id2label = dict(enumerate(names))
    hf_tokenizer = copy.deepcopy(hf_tokenizer)
    hf_tokenizer.model_max_length = max_length
    pipe = pipeline("token-classification", model=model, tokenizer=hf_tokenizer, device="cpu")
    documents = DocumentTokenizer(hf_tokenizer, max_length=max_length, stride=stride or 0, max_document_tokens=10_000)
    (encoded,) = documents.encode([text])
    assert isinstance(encoded, EncodedText)
    logits = []
    for index, window in enumerate(encoded.windows):
        start, stop = encoded.window_range(index)
        labels = [names[0]] * len(window)
        for token in range(start, stop):
            labels[encoded.content_offset + token - start] = label_of(encoded, token)
        logits.append(np.log(probabilities(labels, names=names)))
    pre, _, post = pipe._sanitize_parameters(aggregation_strategy=strategy, stride=stride)
    outputs = []
    for chunk, window_logits in zip(pipe.preprocess(text, **pre), logits, strict=True):
        output = pipe.forward(chunk)
        output["logits"] = torch.from_numpy(window_logits)[None]
        outputs.append(output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = pipe.postprocess(outputs, **post)
    theirs = [(e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in found]
    decoder = EntityDecoder(dict(enumerate(names)), aggregation=strategy, scores="logits")  # type: ignore[arg-type]
    ours = [(e["label"], e["start"], e["end"]) for e in decoder.decode(encoded, logits)]
    model.config.id2label = dict(enumerate(BIO))
    return theirs, ours


def by_word(text: str, labels: dict[str, str]) -> Callable[[EncodedText, int], str]:
    """Label every token inside one of the given words (first token ``B-``, others ``I-``)."""
    def label_of(encoded: EncodedText, token: int) -> str:
        for word, label in labels.items():
            where = text.index(word)
            if encoded.ends[token] > where and encoded.starts[token] < where + len(word):
                first = encoded.starts[token] <= where or token == 0 or encoded.ends[token - 1] <= where
                return label if first else "I-" + label[2:]
        return "O"
    return label_of


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta"])
def test_words_are_not_glued_across_newlines_and_tabs(family):
    # The fallback word test looks for " " only (PR #12611; issues #23322, #27876).
    text = "Paris\nLondon\tBerlin"
    labels = by_word(text, {"Paris": "B-LOC", "London": "B-LOC", "Berlin": "B-LOC"})
    theirs, ours = answers(zoo_tokenizer(family), text, labels, "first")
    assert theirs == [("LOC", 0, 19)]  # one "word" across the newline and the tab
    assert ours == [("LOC", 0, 5), ("LOC", 6, 12), ("LOC", 13, 19)]


def test_a_word_start_is_a_word_start_even_when_normalisation_changes_its_length():
    # WordPiece: the pipeline calls a token a subword when its string length differs from its
    # text span; the normaliser dropping a zero-width character changes that length.
    text = "paris zo\u200be"
    labels = by_word(text, {"paris": "B-LOC", "zo\u200be": "B-PER"})
    theirs, ours = answers(wordpiece(), text, labels, "first")
    assert theirs == [("LOC", 0, 10)]  # "zoe" swallowed into "paris"
    assert ours == [("LOC", 0, 5), ("PER", 6, 10)]


def test_an_entity_keeps_the_combining_marks_of_its_last_character():
    # An accent stripped by the normaliser falls outside the token's offsets: the pipeline
    # answers "zoe" for a decomposed "zoë", leaving the diaeresis behind.
    text = "paris zoe\u0308"
    theirs, ours = answers(wordpiece(), text, by_word(text, {"zoe": "B-PER"}), "simple")
    assert theirs == [("PER", 6, 9)]
    assert ours == [("PER", 6, 10)]


def test_an_entity_longer_than_the_overlap_survives_the_window_cut():
    # The pipeline merges windows entity by entity and keeps the longest overlapping one, so an
    # entity cut by a window edge on both sides loses its head (stride merge of PR #21771).
    text = "a b c d e f g h i j k l m n o p"
    person = "e f g h i j k l"

    def label_of(encoded: EncodedText, token: int) -> str:
        start = text.index(person)
        if start <= encoded.starts[token] < start + len(person):
            return "B-PER" if encoded.starts[token] == start else "I-PER"
        return "O"

    theirs, ours = answers(wordpiece(), text, label_of, "simple", max_length=8, stride=2)
    assert theirs == [("PER", 8, 19)]  # "k l" lost: a window saw only the tail, a shorter span
    assert ours == [("PER", 8, 23)]


def test_bioes_entities_are_not_split_at_their_last_token():
    names = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    text = "barack obama visited new york city"
    tags = ["B-PER", "E-PER", "O", "B-LOC", "I-LOC", "E-LOC"]
    theirs, ours = answers(wordpiece(), text, lambda _, token: tags[token], "simple", names=names)
    assert theirs == [("PER", 0, 6), ("PER", 7, 12), ("LOC", 13, 28), ("LOC", 29, 34)][:1] + theirs[1:]
    assert len(theirs) == 4  # E- is not understood: every entity comes back in two pieces
    assert ours == [("PER", 0, 12), ("LOC", 21, 34)]


def test_plain_labels_with_hyphens_keep_their_name():
    # get_tag/group_sub_entities split a plain label at its first hyphen (issue #23206).
    names = ["O", "WORK-OF-ART", "PER"]
    text = "barack obama visited paris"
    tags = ["PER", "PER", "O", "WORK-OF-ART"]
    theirs, ours = answers(wordpiece(), text, lambda _, token: tags[token], "simple", names=names)
    assert theirs == [("PER", 0, 12), ("OF-ART", 21, 26)]
    assert ours == [("PER", 0, 12), ("WORK-OF-ART", 21, 26)]


def test_byte_pieces_of_one_character_give_one_entity():
    text = "hi 中 there"  # byte-level BPE spells this rare character in three tokens

    def label_of(encoded: EncodedText, token: int) -> str:
        pieces = [i for i in range(encoded.num_tokens) if (encoded.starts[i], encoded.ends[i]) == (3, 4)]
        return {pieces[0]: "B-PER", pieces[1]: "B-LOC"}.get(token, "O")

    theirs, ours = answers(zoo_tokenizer("roberta"), text, label_of, "simple")
    assert theirs == [("PER", 3, 4), ("LOC", 3, 4)]  # two entities on the same character
    assert ours == [("PER", 3, 4)]


def test_spans_exclude_the_space_sentencepiece_puts_in_offsets():
    # Docstring example of the pipeline (camembert): sentence[12:26] == " jean-baptiste"; #22337.
    text = "I live in Paris"
    theirs, ours = answers(zoo_tokenizer("xlm-roberta"), text, by_word(text, {"Paris": "B-LOC"}), "simple")
    assert theirs == [("LOC", 9, 15)] and text[9:15] == " Paris"
    assert ours == [("LOC", 10, 15)]


def test_whitespace_only_entities_are_dropped():
    text = "a   b"

    def label_of(encoded: EncodedText, token: int) -> str:
        return "B-MISC" if text[encoded.starts[token] : encoded.ends[token]].strip() == "" else "O"

    theirs, ours = answers(zoo_tokenizer("roberta"), text, label_of, "simple")
    assert theirs and all(text[start:end].strip() == "" for _, start, end in theirs)
    assert ours == []


def test_a_window_that_starts_on_a_word_keeps_its_offsets_trimmed():
    # With stride, the tokenizers library leaves the first token of every overflow window
    # untrimmed (its span starts on the preceding space), so the pipeline reports that space.
    text = "one two three four five six seven eight nine ten eleven twelve"
    hf = zoo_tokenizer("roberta")
    documents = DocumentTokenizer(hf, max_length=8, stride=2, max_document_tokens=1000)
    (encoded,) = documents.encode([text])
    assert isinstance(encoded, EncodedText)
    second = encoded.window_starts[1]
    word_start = int(encoded.starts[second])

    def label_of(doc: EncodedText, token: int) -> str:
        return "B-PER" if token == second else "O"

    theirs, ours = answers(hf, text, label_of, "simple", max_length=8, stride=2)
    assert any(start == word_start - 1 and text[start] == " " for _, start, _ in theirs)
    assert ("PER", word_start, int(encoded.ends[second])) in ours
    assert all(not text[start].isspace() for _, start, _ in ours)


def test_korean_words_are_not_glued_to_the_previous_word_by_an_uncased_tokenizer():
    # Uncased BERT decomposes Hangul syllables (NFD) before stripping accents: the token string
    # "한국어" is then longer than its 3-character span and the pipeline takes it for a subword.
    text = "서울 한국어"
    labels = by_word(text, {"서울": "B-LOC", "한국어": "B-MISC"})
    theirs, ours = answers(zoo_tokenizer("bert-uncased"), text, labels, "first")
    assert theirs == [("LOC", 0, 6)]
    assert ours == [("LOC", 0, 2), ("MISC", 3, 6)]

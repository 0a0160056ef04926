import copy

import pytest
from transformers import BertConfig, RobertaConfig

from tests.parity.corpus import corpus
from tests.parity.zoo import FAMILIES, tokenizer
from tests.unit.text.helpers import wordpiece
from worker.text.tokenize import DocumentTokenizer, EncodedText, TooLarge, model_length_limit

TEXTS = corpus(60, long_every=6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("max_length", "stride"), [(64, 16), (16, 0), (12, 9), (40, 1)])
def test_windows_are_exactly_the_tokenizers_own_overflow_windows(family, max_length, stride):
    hf = tokenizer(family)
    documents = DocumentTokenizer(hf, max_length=max_length, stride=stride, max_document_tokens=100_000)
    for text, encoded in zip(TEXTS, documents.encode(TEXTS), strict=True):
        assert isinstance(encoded, EncodedText)
        reference = hf(text, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True)
        assert encoded.windows == reference["input_ids"]
        assert all(len(window) <= max_length for window in encoded.windows)


@pytest.mark.parametrize("family", FAMILIES)
def test_offsets_and_token_count_are_the_tokenizers(family):
    hf = tokenizer(family)
    documents = DocumentTokenizer(hf, max_length=64, stride=8, max_document_tokens=100_000)
    for text, encoded in zip(TEXTS, documents.encode(TEXTS), strict=True):
        reference = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        assert encoded.token_ids.tolist() == reference["input_ids"]
        assert list(zip(encoded.starts.tolist(), encoded.ends.tolist(), strict=True)) == reference["offset_mapping"]
        assert encoded.num_tokens == len(reference["input_ids"])


def test_special_token_strings_typed_in_the_text_are_text():
    # The tokenizer's own special-tokens mask says a typed "[SEP]" is not a special token.
    hf = wordpiece()
    encoded = DocumentTokenizer(hf, max_length=16, stride=2, max_document_tokens=100).encode(["a [SEP] b"])[0]
    assert isinstance(encoded, EncodedText)
    assert encoded.num_tokens == 3
    assert encoded.windows == [hf.convert_tokens_to_ids(["[CLS]", "a", "[SEP]", "b", "[SEP]"])]


def test_too_large_documents_are_reported_not_truncated():
    documents = DocumentTokenizer(wordpiece(), max_length=8, stride=2, max_document_tokens=5)
    small, large = documents.encode(["a b c", "a b c d e f"])
    assert isinstance(small, EncodedText)
    assert isinstance(large, TooLarge)
    assert large.reason == "too_large"
    assert str(large) == "document has 6 tokens, more than the limit of 5"


def test_empty_text_still_gets_one_window_of_special_tokens():
    (encoded,) = DocumentTokenizer(wordpiece(), max_length=8, stride=2, max_document_tokens=5).encode([""])
    assert isinstance(encoded, EncodedText)
    assert encoded.windows == [[2, 3]] and encoded.num_tokens == 0


@pytest.mark.parametrize("stride", [-1, 6, 7])
def test_a_stride_that_leaves_no_progress_is_refused_naming_stride(stride):
    with pytest.raises(ValueError, match="stride"):
        DocumentTokenizer(wordpiece(), max_length=8, stride=stride, max_document_tokens=100)


def test_max_length_must_leave_room_for_content():
    with pytest.raises(ValueError, match="max_length 2"):
        DocumentTokenizer(wordpiece(), max_length=2, stride=0, max_document_tokens=100)


def test_zero_max_length_means_the_tokenizers_own():
    documents = DocumentTokenizer(wordpiece(model_max_length=16), max_length=0, stride=2, max_document_tokens=9)
    assert documents.max_length == 16
    unbounded = copy.deepcopy(wordpiece())
    unbounded.model_max_length = int(1e30)
    with pytest.raises(ValueError, match="max_length"):
        DocumentTokenizer(unbounded, max_length=0, stride=2, max_document_tokens=9)


def test_truncation_left_on_the_tokenizer_does_not_leak_into_windows():
    hf = copy.deepcopy(wordpiece())
    hf.backend_tokenizer.enable_truncation(max_length=3)
    (encoded,) = DocumentTokenizer(hf, max_length=8, stride=2, max_document_tokens=100).encode(["a b c d e f g h"])
    assert isinstance(encoded, EncodedText) and encoded.num_tokens == 8


def test_model_length_limit_takes_the_position_table_into_account():
    assert model_length_limit(int(1e30), BertConfig(max_position_embeddings=512)) == 512
    assert model_length_limit(128, BertConfig(max_position_embeddings=512)) == 128
    assert model_length_limit(int(1e30), RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    with pytest.raises(ValueError, match="max_length"):
        model_length_limit(int(1e30), object())


def test_from_pretrained_reads_a_saved_model_folder(tmp_path):
    hf = tokenizer("roberta")
    hf.save_pretrained(tmp_path)
    RobertaConfig(max_position_embeddings=34, pad_token_id=1).save_pretrained(tmp_path)
    documents = DocumentTokenizer.from_pretrained(str(tmp_path), stride=4)
    assert documents.max_length == 32  # 34 positions minus RoBERTa's padding offset, below the tokenizer's 64
    with pytest.raises(ValueError, match="max_length 40 exceeds"):
        DocumentTokenizer.from_pretrained(str(tmp_path), max_length=40)

"""Documents to model windows, with exact character offsets.

Each text is tokenized once (one batch call into the fast tokenizer's Rust backend, without
special tokens and without truncation), then split in token space into windows of at most
``max_length`` tokens that overlap by ``stride`` tokens, exactly where the Hugging Face
tokenizer's own ``return_overflowing_tokens``/``stride`` truncation would cut them. Every window
is wrapped in the model's special tokens, learnt from the tokenizer's post-processor and its
special-tokens mask (never by matching token strings; a ``[SEP]`` typed inside a text is text, as
the tokenizer itself says). A document over ``max_document_tokens`` is reported as ``TooLarge``
instead of being truncated.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

# Models whose position ids start after the padding index (RoBERTa's ``padding_idx + 1``), so
# ``max_position_embeddings`` overstates the usable length.
_POSITION_OFFSET_MODELS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet"})
# transformers' sentinel for "no limit known" is int(1e30); anything this large is not a limit.
_NO_LIMIT = 1_000_000


class TooLarge(Exception):
    """The document has more tokens than the configured limit; it is not truncated."""

    reason: str = "too_large"

    def __init__(self, num_tokens: int, limit: int) -> None:
        super().__init__(f"document has {num_tokens} tokens, more than the limit of {limit}")
        self.num_tokens = num_tokens
        self.limit = limit


@dataclass(frozen=True, slots=True, eq=False)
class TokenizerFacts:
    """What decoding needs to know about the tokenizer, as lookup arrays indexed by token id."""

    continuation: npt.NDArray[np.bool_] | None
    """Tokens that continue a word (WordPiece ``##…``); None when the model has no such prefix."""
    token_length: npt.NDArray[np.int32]
    """Length of each token's string (the reference pipeline's WordPiece subword test uses it)."""
    unk_id: int
    """Id of the unknown token, or -1."""


class EncodedText:
    """One document's tokens and engine windows. Made by ``DocumentTokenizer`` and never changed
    after (a plain class rather than a frozen dataclass: a frozen one's constructor costs about
    3 µs per document, a tenth of the worker's own budget for a short one)."""

    __slots__ = ("_arrays", "content_offset", "encoding", "facts", "ids", "num_tokens", "text", "window_content",
                 "window_starts", "window_tokens", "windows")

    def __init__(self, text: str, windows: list[list[int]], num_tokens: int, window_starts: tuple[int, ...],
                 window_content: int, content_offset: int, facts: TokenizerFacts, encoding: Any, ids: list[int],
                 window_tokens: int = -1) -> None:
        self.text = text
        self.windows = windows
        """Engine inputs: at least one, each wrapped in the special tokens, at most max_length long."""
        self.num_tokens = num_tokens
        """Content tokens of the whole document (special tokens not counted)."""
        self.window_starts = window_starts
        """Index of each window's first content token in ``token_ids``."""
        self.window_content = window_content
        """Content tokens per full window (max_length minus the special tokens)."""
        self.content_offset = content_offset
        """Rows of special tokens before the content in every window."""
        self.facts = facts
        self.encoding = encoding
        """The fast tokenizer's own ``Encoding`` of the text. Ids and offsets become arrays only when
        asked for: a tuple per token costs more than the rest of a short document's decoding, and
        the grouping strategies need the offsets of span edges only (``Encoding.token_to_chars``)."""
        self.ids = ids
        self.window_tokens = window_tokens if window_tokens >= 0 else sum(len(window) for window in windows)
        """Tokens of all windows together, special tokens included (what the engine scores)."""
        self._arrays: dict[str, npt.NDArray[np.int32]] = {}

    @property
    def token_ids(self) -> npt.NDArray[np.int32]:
        """Content token ids of the whole document."""
        ids = self._arrays.get("ids")
        if ids is None:
            ids = self._arrays["ids"] = np.array(self.ids, dtype=np.int32)
        return ids

    @property
    def starts(self) -> npt.NDArray[np.int32]:
        """Code point offset of each content token's start into ``text``."""
        return self._offsets()[:, 0]

    @property
    def ends(self) -> npt.NDArray[np.int32]:
        """Code point offset of each content token's end into ``text``."""
        return self._offsets()[:, 1]

    def _offsets(self) -> npt.NDArray[np.int32]:
        offsets = self._arrays.get("offsets")
        if offsets is None:
            if isinstance(self.encoding, JoinedWords):
                offsets = self._arrays["offsets"] = self.encoding.offset_array()
                return offsets
            # fromiter over the flattened pairs is about twice as fast as np.array on a list of tuples.
            flat = itertools.chain.from_iterable(self.encoding.offsets)
            count = self.num_tokens
            offsets = self._arrays["offsets"] = np.fromiter(flat, dtype=np.int32, count=2 * count).reshape(count, 2)
        return offsets

    @property
    def word_index(self) -> npt.NDArray[np.int32] | None:
        """Pre-split input: the given word each content token comes from; None for a text."""
        if not isinstance(self.encoding, JoinedWords):
            return None
        index = self._arrays.get("words")
        if index is None:
            index = self._arrays["words"] = np.array(self.encoding.word_ids, dtype=np.int32)
        return index

    def window_range(self, index: int) -> tuple[int, int]:
        """Content token range ``[start, stop)`` of window ``index``."""
        start = self.window_starts[index]
        return start, min(start + self.window_content, self.num_tokens)


class JoinedWords:
    """A pre-split document's ``Encoding`` as if the text had been the words joined by single
    spaces (the reference pipeline's sentence): the tokenizer gives each token's offsets into its
    own word; here they are shifted into the joined text, when asked for (as for a text). The
    tokens are the tokenizer's for the words (``is_pretokenized``), so no token crosses from one
    word into the next."""

    __slots__ = ("_encoding", "ids", "word_bases")

    def __init__(self, encoding: Any, words: Sequence[str]) -> None:
        self._encoding = encoding
        self.ids: list[int] = encoding.ids
        self.word_bases: list[int] = list(itertools.accumulate((len(word) + 1 for word in words[:-1]), initial=0))

    @property
    def word_ids(self) -> list[int]:
        """The given word of each token (content tokens all come from a word)."""
        return [word if word is not None else 0 for word in self._encoding.word_ids]

    def offset_array(self) -> npt.NDArray[np.int32]:
        """Code point offsets ``(start, end)`` of every token into the joined words."""
        count = len(self.ids)
        offsets = np.fromiter(itertools.chain.from_iterable(self._encoding.offsets), dtype=np.int32,
                              count=2 * count).reshape(count, 2)
        bases = np.asarray(self.word_bases, dtype=np.int32)[np.asarray(self.word_ids, dtype=np.intp)]
        shifted: npt.NDArray[np.int32] = offsets + bases[:, None]
        return shifted

    def token_to_chars(self, index: int) -> tuple[int, int]:
        start, end = self._encoding.token_to_chars(index)
        base = self.word_bases[self._encoding.token_to_word(index)]
        return start + base, end + base

    def word_span(self, start: int, end: int) -> tuple[int, int]:
        """The words ``[first, stop)`` that the joined text's ``[start, end)`` touches."""
        return bisect.bisect_right(self.word_bases, start) - 1, bisect.bisect_left(self.word_bases, end)


class DocumentTokenizer:
    def __init__(
        self, tokenizer: PreTrainedTokenizerFast, *, max_length: int, stride: int, max_document_tokens: int
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast (Rust) tokenizer is needed for character offsets")
        backend: Tokenizer = copy.deepcopy(tokenizer.backend_tokenizer)
        # The backend may carry truncation/padding from a previous call or from tokenizer.json;
        # windows are cut here, so both stay off.
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self._prefix, self._suffix = _special_wrapping(backend)
        if max_length <= 0:
            max_length = int(tokenizer.model_max_length)
            if max_length >= _NO_LIMIT:
                raise ValueError("max_length: the tokenizer does not say its maximum length; set one")
        self.max_length = max_length
        content = max_length - len(self._prefix) - len(self._suffix)
        if content < 1:
            raise ValueError(f"max_length {max_length} leaves no room next to the model's special tokens")
        if not 0 <= stride < content:
            raise ValueError(
                f"stride {stride} must be >= 0 and smaller than the {content} content tokens per window "
                f"(max_length {max_length} minus {max_length - content} special tokens)"
            )
        if max_document_tokens < 1:
            raise ValueError("max_document_tokens must be >= 1")
        self.stride = stride
        self.max_document_tokens = max_document_tokens
        self._content = content
        self._step = content - stride
        unk_id = tokenizer.unk_token_id
        self.facts = _tokenizer_facts(backend, -1 if unk_id is None else int(unk_id))

    @classmethod
    def from_pretrained(
        cls, model: str, *, max_length: int = 0, stride: int = 32, max_document_tokens: int = 65536,
        revision: str = "",
    ) -> DocumentTokenizer:
        from transformers import AutoConfig, AutoTokenizer

        tokenizer: Any = AutoTokenizer.from_pretrained(model, use_fast=True, revision=revision or None)
        config = AutoConfig.from_pretrained(model, revision=revision or None)
        limit = model_length_limit(tokenizer.model_max_length, config)
        if max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's maximum of {limit} tokens")
        return cls(tokenizer, max_length=max_length or limit, stride=stride, max_document_tokens=max_document_tokens)

    def encode(self, texts: Sequence[str | tuple[str, ...]]) -> list[EncodedText | TooLarge]:
        """Tokenize a batch; each text gets its windows, or ``TooLarge``. Never truncates.

        A tuple of words is pre-split input (the pipeline's ``is_split_into_words``): tokenized
        word by word, its text is the words joined by single spaces (``JoinedWords``)."""
        plain = [text for text in texts if isinstance(text, str)]
        if len(plain) == len(texts):  # the common case, in one call
            encodings = self._backend.encode_batch(plain, add_special_tokens=False)
            document = self._document
            return [document(text, encoding) for text, encoding in zip(plain, encodings, strict=True)]
        results: list[EncodedText | TooLarge] = []
        encoded = iter(self.encode(plain))
        split = [words for words in texts if not isinstance(words, str)]
        pretokenized = iter(self._backend.encode_batch([list(words) for words in split], is_pretokenized=True,
                                                       add_special_tokens=False))
        for text in texts:
            if isinstance(text, str):
                results.append(next(encoded))
            else:
                results.append(self._document(" ".join(text), JoinedWords(next(pretokenized), text)))
        return results

    def _document(self, text: str, encoding: Any) -> EncodedText | TooLarge:
        ids: list[int] = encoding.ids
        count = len(ids)
        if count > self.max_document_tokens:
            return TooLarge(count, self.max_document_tokens)
        prefix, suffix, content = self._prefix, self._suffix, self._content
        if count <= content:  # one window: the common case, kept short (this runs per document)
            window = prefix + ids + suffix
            return EncodedText(text, [window], count, (0,), content, len(prefix), self.facts, encoding, ids,
                               len(window))
        # Window k starts at k*step; the last is the first that reaches the end (the Rust
        # tokenizer's overflow rule), so no token is left out and no window is empty.
        last = -(-(count - content) // self._step)
        window_starts = tuple(range(0, last * self._step + 1, self._step))
        windows = [prefix + ids[start : start + content] + suffix for start in window_starts]
        return EncodedText(text, windows, count, window_starts, content, len(prefix), self.facts, encoding, ids)


def model_length_limit(model_max_length: int, config: Any) -> int:
    """Longest window the model accepts: the tokenizer's limit bounded by the position table."""
    limit = int(model_max_length) if 0 < int(model_max_length) < _NO_LIMIT else _NO_LIMIT
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in _POSITION_OFFSET_MODELS:
            positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
        limit = min(limit, positions)
    if limit >= _NO_LIMIT:
        raise ValueError("max_length: neither the tokenizer nor the model config states a maximum length; set one")
    return limit


def _special_wrapping(backend: Tokenizer) -> tuple[list[int], list[int]]:
    """Special token ids the post-processor puts before and after a single sequence."""
    for probe in ("a", "x", "0", ".", "the"):
        bare = backend.encode(probe, add_special_tokens=False)
        if not bare.ids:
            continue
        wrapped = backend.post_process(bare, None, True)
        content = [i for i, flag in enumerate(wrapped.special_tokens_mask) if not flag]
        if content:
            prefix, suffix = wrapped.ids[: content[0]], wrapped.ids[content[-1] + 1 :]
            if len(prefix) + len(suffix) == backend.num_special_tokens_to_add(False):
                return list(prefix), list(suffix)
    raise ValueError("cannot tell where the tokenizer's post-processor puts its special tokens")


def _tokenizer_facts(backend: Tokenizer, unk_id: int) -> TokenizerFacts:
    size = backend.get_vocab_size(with_added_tokens=True)
    tokens = [backend.id_to_token(i) or "" for i in range(size)]
    prefix = getattr(backend.model, "continuing_subword_prefix", None)
    continuation = np.array([t.startswith(prefix) for t in tokens], dtype=bool) if prefix else None
    return TokenizerFacts(
        continuation=continuation,
        token_length=np.array([len(t) for t in tokens], dtype=np.int32),
        unk_id=unk_id,
    )

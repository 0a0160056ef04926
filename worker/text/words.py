"""Where words begin, for the word-level aggregation strategies (first, average, max).

Default rules:

- WordPiece-style tokenizers (the model has a ``continuing_subword_prefix``, e.g. ``##``): a token
  continues a word iff its vocabulary string starts with that prefix.
- Other tokenizers (byte-level BPE, Unigram/SentencePiece) have no such marker; as in the reference
  pipeline a token continues a word unless whitespace touches its start (the character before it
  or its own first character is whitespace) — any Unicode whitespace, not only the ASCII space.
- The unknown token always starts a word (as in the pipeline); a token that shares a character
  with the previous token (byte-level pieces of one emoji) always continues it.

With ``pipeline_rules`` the reference pipeline's own tests are used instead: WordPiece tokens are
subwords iff their string length differs from the length of their text span (wrong for accents
stripped from decomposed text, zero-width characters, dotted capital I), and the fallback looks
for the ASCII space only (so a tab or newline glues words together).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.text.characters import CodePoints, is_space
from worker.text.tokenize import TokenizerFacts

_SPACE = 0x20


def word_starts(
    facts: TokenizerFacts,
    ids: npt.NDArray[np.int32],
    starts: npt.NDArray[np.int32],
    ends: npt.NDArray[np.int32],
    around: tuple[CodePoints, CodePoints] | None,
    *,
    pipeline_rules: bool = False,
) -> npt.NDArray[np.bool_]:
    """True for each token that begins a word. The arrays are per token, possibly of many
    concatenated sequences (the caller opens a word at each sequence's start): its id, its code
    point offsets and, for tokenizers without a continuation prefix, ``around``: the code points
    before it and at its start (0 outside the text)."""
    if facts.continuation is not None:
        subword = facts.token_length[ids] != ends - starts if pipeline_rules else facts.continuation[ids]
    else:
        if around is None:
            raise ValueError("a tokenizer without a continuation prefix needs the characters around each token")
        before, first = around
        # The pipeline looks for the ASCII space only; any whitespace separates words.
        touches_space = (
            (before == _SPACE) | (first == _SPACE) if pipeline_rules else is_space(before) | is_space(first)
        )
        subword = (starts > 0) & ~touches_space
    if facts.unk_id >= 0:
        subword &= ids != facts.unk_id
    if not pipeline_rules and len(ids) > 1:
        subword[1:] |= starts[1:] < ends[:-1]
    result: npt.NDArray[np.bool_] = ~subword
    return result

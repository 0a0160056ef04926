"""Keeping user-perceived characters whole at span edges.

Tokenizer offsets can cut a character from the marks joined to it: a normaliser that strips
accents leaves a decomposed ``e`` + U+0308 as a token covering only the ``e``; byte-level
tokens can end between an emoji and its skin-tone modifier or inside a ZWJ sequence. A span
edge is therefore moved outward past such joiners — a simplified form of Unicode's extended
grapheme cluster rules GB9 (Extend, ZWJ) and GB11 (ZWJ followed by the joined character).
"""

from __future__ import annotations

import unicodedata

_ZWJ = "\u200d"
_MARKS = frozenset({"Mn", "Mc", "Me"})  # combining marks, variation selectors included
ZWJ = ord(_ZWJ)
FIRST_JOINER = 0x300
"""No code point below U+0300 (the first combining mark) joins the character before it."""


def _joins_previous(char: str) -> bool:
    return (
        char == _ZWJ
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # emoji skin-tone modifiers
        or unicodedata.category(char) in _MARKS
    )


def _attached(text: str, index: int) -> bool:
    """True when ``text[index]`` belongs to the character before it."""
    return _joins_previous(text[index]) or (index > 0 and text[index - 1] == _ZWJ)


def whole_characters(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` widened so that neither edge falls inside a joined character sequence."""
    while 0 < start < len(text) and _attached(text, start):
        start -= 1
    while end < len(text) and _attached(text, end):
        end += 1
    return start, end

"""A deterministic, varied multilingual corpus for parity and property tests.

Texts mix Latin with accents (composed and decomposed), Cyrillic, Greek, CJK, Arabic, Hebrew,
Devanagari, emoji (with ZWJ sequences, skin tones and flags), runs of spaces, tabs and newlines,
zero-width characters, literal special-token strings, and some texts many windows long.
"""

from __future__ import annotations

import random
import unicodedata

WORDS = [
    "Barack", "Obama", "visited", "Paris", "and", "London", "with", "Angela", "Merkel", "the", "United",
    "Nations", "Microsoft", "Corporation", "announced", "on", "Monday", "that", "New", "York", "City",
    "is", "large", "Jean-Baptiste", "lives", "in", "Montréal", "Zoë", "Müller", "São", "Paulo", "Ærøskøbing",
    "François", "naïve", "café", "Straße", "İstanbul", "Łódź", "Dvořák", "Москва", "Владимир", "Путин",
    "Αθήνα", "Σωκράτης", "北京", "东京大学", "習近平", "日本語", "한국어", "서울", "محمد", "القاهرة", "ירושלים",
    "नई", "दिल्ली", "Bangkok", "กรุงเทพ", "O'Neil", "e.g.", "U.S.A.", "3.14", "2024-11-05", "$1,000",
    "@user", "#hashtag", "https://example.org/a?b=c", "e-mail", "well-known", "co-operate", "x86_64",
    "iPhone", "McDonald's", "AT&T", "C++", "IBM", "NASA", "Dr.", "Mr.", "St.", "Ph.D.", "(Google)",
    "«Le", "Monde»", "“quoted”", "—", "…", ",", ".", ";", "!", "?", "'", '"',
]
EMOJI = ["😀", "👩‍👩‍👧", "👍🏽", "🇫🇷", "🇯🇵", "❤️", "🤖", "🏳️‍🌈", "😂😂", "👨🏿‍💻"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad"]
SPACES = [" ", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \t ", "\r\n", "\u00a0", "\u3000", "\u2009"]
SPECIAL_STRINGS = ["[SEP]", "[CLS]", "[UNK]", "[MASK]", "<s>", "</s>", "<pad>", "<mask>", "<unk>"]


def _word(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(EMOJI)
    if roll < 0.09:
        return rng.choice(SPECIAL_STRINGS)
    word = rng.choice(WORDS)
    if roll < 0.14:
        word = unicodedata.normalize("NFD", word)
    elif roll < 0.19:
        cut = rng.randrange(len(word) + 1)
        word = word[:cut] + rng.choice(ZERO_WIDTH) + word[cut:]
    elif roll < 0.22:
        word = word.upper()
    elif roll < 0.25:
        word = word + rng.choice(EMOJI)
    return word


def text_of_words(rng: random.Random, count: int, *, clean: bool = False) -> str:
    """``count`` words; ``clean`` texts are plain prose: single spaces, words as listed."""
    if clean:
        return " ".join(rng.choice(WORDS) for _ in range(count))
    parts: list[str] = []
    if rng.random() < 0.15:
        parts.append(rng.choice(SPACES))
    for index in range(count):
        if index:
            parts.append(rng.choice(SPACES) if rng.random() < 0.85 else "")
        parts.append(_word(rng))
    if rng.random() < 0.15:
        parts.append(rng.choice(SPACES))
    return "".join(parts)


def corpus(count: int = 520, *, seed: int = 1234, long_every: int = 10, long_words: int = 260) -> list[str]:
    """``count`` texts; every ``long_every``-th is ``long_words`` words long (several windows),
    one in four of the others is clean prose."""
    rng = random.Random(seed)
    texts = ["", " ", "\t\n", "Paris", "[SEP]", "😀", "北京", "Zoë\u200bMüller", "a\u0301", "İ"]
    while len(texts) < count:
        words = long_words if len(texts) % long_every == 0 else rng.randint(1, 30)
        texts.append(text_of_words(rng, words, clean=len(texts) % 4 == 1))
    return texts


def training_text(seed: int = 99, lines: int = 3000) -> list[str]:
    """Text to train the test tokenizers on (a different sample of the same distribution)."""
    rng = random.Random(seed)
    return [text_of_words(rng, rng.randint(3, 25)) for _ in range(lines)]

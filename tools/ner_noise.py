"""General vocabulary noise for the training split of the synthetic NER corpus.

Templates alone teach a tiny model a bad shortcut: every word it knows is template wording,
so any unfamiliar word (split into several word pieces) "must be" a name. Real text is full
of ordinary words the model has never seen. So the training split (never the held-out one)
swaps some template words for ordinary words from Faker's word lists, with made-up
inflections, and sometimes adds a sentence of ordinary words; all of it labelled O.
"""

from __future__ import annotations

import importlib
import random
import re

_WORD = re.compile(r"\b[a-z]{3,}\b")
_OTHER_LANGUAGES = ("de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "sv_SE", "la")
_SUFFIXES = ("", "", "", "s", "ed", "ing", "er", "ly", "ation", "ness", "ment", "ers")


def _english_words() -> list[str]:
    from faker.providers.company.en_US import Provider as Company
    from faker.providers.job.en_US import Provider as Job
    from faker.providers.lorem.en_US import Provider as Lorem

    words = set(Lorem.word_list)
    for group in (*Company.catch_phrase_words, *Company.bsWords):
        words.update(part.lower() for phrase in group for part in phrase.split())
    for job in Job.jobs:
        words.update(part.lower() for part in re.split(r"[\s,/()]+", job) if part)
    return sorted(w for w in words if w.isalpha())


def _other_words() -> list[str]:
    words: set[str] = set()
    for locale in _OTHER_LANGUAGES:
        try:
            module = importlib.import_module(f"faker.providers.lorem.{locale}")
        except ImportError:
            continue
        words.update(w for w in module.Provider.word_list if w.isalpha() and w.islower())
    return sorted(words)


class WordNoise:
    def __init__(self, rng: random.Random, swap_rate: float = 0.12, sentence_rate: float = 0.3) -> None:
        self.rng = rng
        self.english = _english_words()
        self.other = _other_words()
        self.swap_rate = swap_rate
        self.sentence_rate = sentence_rate

    def word(self) -> str:
        """An ordinary word, sometimes inflected or compounded into one never seen before."""
        pool = self.english if self.rng.random() < 0.7 else self.other
        word = self.rng.choice(pool)
        if self.rng.random() < 0.15:
            word += self.rng.choice(pool)
        return word + self.rng.choice(_SUFFIXES)

    def context_template(self, labels: tuple[str, ...]) -> str:
        """Ordinary words around 1-3 entity slots, e.g. "word word {PER} word, word {LOC}."

        With no template wording to lean on, the model has to recognise entities by their
        own shape and ordinary words as O, which is what carries over to unseen text."""
        parts = [self.word() for _ in range(self.rng.randint(0, 3))]
        for _ in range(self.rng.randint(1, 3)):
            parts.append("{" + self.rng.choice(labels) + "}" + self.rng.choice(("", "", "", ",", ":", "'s")))
            parts += [self.word() for _ in range(self.rng.randint(1, 4))]
        if self.rng.random() < 0.3:
            parts.pop()  # end on the entity
        return " ".join(parts) + self.rng.choice((".", ".", "!", "?", ""))

    def perturb(self, literal: str) -> str:
        """Template text with some lowercase words replaced by ordinary words."""
        return _WORD.sub(lambda m: self.word() if self.rng.random() < self.swap_rate else m.group(0), literal)

    def sentence(self) -> str:
        """A sentence of ordinary words: capitalised start, sometimes a Title Case headline."""
        words = [self.word() for _ in range(self.rng.randint(3, 14))]
        if self.rng.random() < 0.15:
            return " ".join(w.capitalize() for w in words)
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.rng.choice((".", ".", ".", "!", "?", ":"))

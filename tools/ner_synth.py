"""Synthetic NER examples: templates filled with Faker names and curated lists.

Every example is (text, [(start, end, label)]) with character offsets into text, labels
PER, ORG, LOC, MISC. The "train" and "heldout" splits use disjoint templates
(ner_templates.py) and their own random streams; by default they also use disjoint Faker
locales. Only the training split gets the ordinary-word noise of ner_noise.py. Everything
is seeded: the same split, seed, count and locales always give the same examples.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import NamedTuple

from faker import Faker
from ner_curated import CURATED
from ner_noise import WordNoise
from ner_templates import HELDOUT_TEMPLATES, TRAIN_TEMPLATES

LABELS = ("PER", "ORG", "LOC", "MISC")
# Many name orthographies in training, so that names of unseen locales look familiar.
TRAIN_LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE",
    "hu_HU", "hr_HR", "sk_SK", "sl_SI", "lv_LV", "lt_LT", "tr_TR", "en_IN", "id_ID", "nl_BE",
    "es_CL", "ga_IE", "sw", "yo_NG", "zu_ZA", "en_NZ", "az_AZ",
)
# Locales with their own name inventories, so held-out people and places mostly differ.
HELDOUT_LOCALES = (
    "en_IE", "de_AT", "de_CH", "fr_CH", "fr_CA", "es_MX", "pt_PT", "da_DK", "fi_FI", "cs_CZ",
    "no_NO", "ro_RO",
)
HELDOUT_SEED = 20_251_123

Span = tuple[int, int, str]


class Example(NamedTuple):
    text: str
    spans: list[Span]


_SLOT = re.compile(r"\{([A-Z]+)(?:\.([a-z]+))?\}")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_RANGES = {"SMALLNUM": (2, 12), "YEAR": (1960, 2030), "AGE": (18, 91)}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def curated(kind: str) -> tuple[str, ...]:
    """Curated names of one kind, shared by both splits: well-known names (nationalities,
    languages, big companies) are what any real model knows; the patterns with
    placeholders ("University of <city>") still produce unseen names from each split's locales."""
    return CURATED[kind]


def _fix_set_ordered_lists(fake: Faker) -> None:
    """Some Faker locales (it_IT cities) build lists from sets, whose order changes with
    PYTHONHASHSEED; sorted, a seeded Faker gives the same names in every process."""
    for provider in fake.get_providers():
        cities = getattr(provider, "cities", None)
        if isinstance(cities, list):
            provider.cities = sorted(cities)


class Synth:
    """Renders templates of one split into labelled texts."""

    def __init__(self, split: str, seed: int, locales: tuple[str, ...] | None = None) -> None:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
        self.split = split
        self.rng = random.Random(f"{split}:{seed}")
        locales = locales or (TRAIN_LOCALES if split == "train" else HELDOUT_LOCALES)
        self.fakers = []
        for locale in locales:
            fake = Faker(locale)
            fake.seed_instance(self.rng.randrange(2**32))
            _fix_set_ordered_lists(fake)
            self.fakers.append(fake)
        self.templates = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
        self.fake = self.fakers[0]
        self.noise = WordNoise(self.rng) if split == "train" else None
        self.last_person = ""
        self.fillers: dict[str, Callable[[str], tuple[str, str]]] = {
            "PER": self._person, "ORG": self._org, "LOC": self._loc, "MISC": self._misc,
        }

    # ---- entities: each returns (text before the entity that is not part of it, entity)
    def _person(self, variant: str) -> tuple[str, str]:
        fake, rng = self.fake, self.rng
        if variant == "ref" and self.last_person:
            return "", self.last_person
        first, last = fake.first_name(), fake.last_name()
        self.last_person = last
        if variant in ("last", "ref"):
            return "", last
        if variant == "first":
            return "", first
        roll = rng.random()
        if roll < 0.08:
            return "", f"{first} {fake.first_name()[0]}. {last}"
        if roll < 0.14:
            return "", f"{first[0]}. {last}"
        if roll < 0.17:
            return "", f"{first} {fake.last_name()}-{last}"
        if roll < 0.22:
            return "", f"{first} {fake.first_name()} {last}"
        return "", f"{first} {last}"

    def _org(self, variant: str) -> tuple[str, str]:
        rng = self.rng
        if not variant:
            variant = rng.choices(("company", "known", "inst", "media", "club"), (55, 15, 12, 8, 10))[0]
        if variant == "company":
            for _ in range(5):
                name = str(self.fake.company())
                if "," not in name:
                    return "", name
            return "", f"{self.fake.last_name()} Group"
        if variant == "known":
            return "", rng.choice(curated("org"))
        pattern = rng.choice(curated(variant))
        return "", self._expand(pattern)

    def _loc(self, variant: str) -> tuple[str, str]:
        fake, rng = self.fake, self.rng
        if not variant:
            variant = rng.choices(("city", "country", "region", "geo"), (50, 25, 15, 10))[0]
        if variant == "city":
            return "", str(fake.city())
        if variant == "country":
            for _ in range(5):
                country = str(fake.country())
                if not re.search(r"[(),]", country):
                    return "", country
            return "", rng.choice(curated("country"))
        if variant == "region":
            for method in ("administrative_unit", "state"):
                try:
                    return "", str(getattr(fake, method)())
                except AttributeError:
                    continue
            return "", rng.choice(curated("geo"))
        if variant == "street":
            return "", str(fake.street_name())
        place = rng.choice(curated("geo"))
        # "the Alps": the article is text, the name is the entity.
        return ("the ", place[4:]) if place.startswith("the ") else ("", place)

    def _misc(self, variant: str) -> tuple[str, str]:
        kind = variant or self.rng.choice(("nat", "lang", "event", "product", "award"))
        return "", self._expand(self.rng.choice(curated(kind)))

    def _expand(self, pattern: str) -> str:
        """Fill the small placeholders inside curated patterns, e.g. 'University of <city>'."""
        fake, rng = self.fake, self.rng
        parts = {
            "<city>": lambda: str(fake.city()),
            "<last>": lambda: str(fake.last_name()),
            "<year>": lambda: str(rng.randint(1950, 2030)),
            "<n>": lambda: str(rng.randint(2, 99)),
            "<L>": lambda: rng.choice("ABCDEFGHKLMNPRSTVXZ"),
        }
        for key, make in parts.items():
            while key in pattern:
                pattern = pattern.replace(key, make(), 1)
        return pattern

    # ---- fillers: never entities
    def _filler(self, name: str) -> str:
        fake, rng = self.fake, self.rng
        if name == "NUM":
            return rng.choice((str(rng.randint(2, 99)), str(rng.randint(100, 999)), self._thousands()))
        if name in _RANGES:
            return str(rng.randint(*_RANGES[name]))
        if name == "MONTH":
            return rng.choice(_MONTHS)
        if name == "DAY":
            return rng.choice(_DAYS)
        if name == "DATE":
            day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1990, 2030)
            return rng.choice((f"{_MONTHS[month - 1]} {day}, {year}", f"{day} {_MONTHS[month - 1]} {year}",
                               f"{year}-{month:02d}-{day:02d}", f"{day:02d}/{month:02d}/{year}",
                               f"{day}.{month}.{year}"))
        if name == "TIME":
            if rng.random() < 0.5:
                return f"{rng.randint(7, 22)}:{rng.choice(('00', '15', '30', '45'))}"
            return f"{rng.randint(1, 12)} {rng.choice(('am', 'pm'))}"
        if name == "MONEY":
            amount = rng.choice((str(rng.randint(1, 999)), f"{rng.randint(1, 99)}.{rng.randint(1, 9)}",
                                 self._thousands()))
            scale = rng.choice(("", " million", " billion", "m", "bn", ""))
            currency = rng.choice(("$", "€", "£", "US$", "CHF ", "R$ "))
            return rng.choice((f"{currency}{amount}{scale}", f"{amount}{scale} euros", f"{amount}{scale} dollars"))
        if name == "PCT":
            value = rng.choice((str(rng.randint(1, 60)), f"{rng.randint(0, 20)}.{rng.randint(1, 9)}"))
            return rng.choice((f"{value}%", f"{value} percent", f"{value} per cent"))
        if name == "SCORE":
            return f"{rng.randint(0, 5)}-{rng.randint(0, 5)}"
        if name == "HOUSENO":
            return str(rng.randint(1, 250)) + rng.choice(("", "", "", "a", "B"))
        if name in ("POSTCODE", "PHONE", "EMAIL"):
            return str(getattr(fake, {"POSTCODE": "postcode", "PHONE": "phone_number", "EMAIL": "email"}[name])())
        if name == "JOB":
            for _ in range(5):
                job = str(fake.job()).split(",")[0].split("/")[0].strip()
                if 0 < len(job.split()) <= 4:
                    return job
            return "consultant"
        raise KeyError(f"unknown template slot {{{name}}}")

    def _thousands(self) -> str:
        return f"{self.rng.randint(1, 99)},{self.rng.randint(0, 999):03d}"

    # ---- rendering
    def render(self, template: str) -> Example:
        text: list[str] = []
        spans: list[Span] = []
        pos = cursor = 0
        for match in _SLOT.finditer(template):
            literal = self._literal(template[cursor:match.start()])
            kind, variant = match.group(1), match.group(2) or ""
            if kind in self.fillers:
                prefix, entity = self.fillers[kind](variant)
                entity = " ".join(entity.split())  # some Faker names carry stray spaces
                pos += len(literal) + len(prefix)
                spans.append((pos, pos + len(entity), kind))
                text += [literal, prefix, entity]
                pos += len(entity)
            else:
                value = self._filler(kind)
                text += [literal, value]
                pos += len(literal) + len(value)
            cursor = match.end()
        text.append(self._literal(template[cursor:]))
        joined = "".join(text)
        return Example(joined[:1].upper() + joined[1:], spans)

    def _literal(self, text: str) -> str:
        return self.noise.perturb(text) if self.noise else text

    def sentence(self) -> Example:
        if self.noise:
            roll = self.rng.random()
            if roll < self.noise.sentence_rate / 3:
                return Example(self.noise.sentence(), [])
            if roll < self.noise.sentence_rate:
                return self.render(self.noise.context_template(LABELS))
        return self.render(self.rng.choice(self.templates))

    def paragraph(self, max_sentences: int) -> Example:
        """1..max_sentences sentences of one locale, joined by spaces or line breaks."""
        self.last_person = ""
        self.fake = self.rng.choice(self.fakers)
        count = self.rng.randint(1, max_sentences)
        text, spans = "", []
        for i in range(count):
            part = self.sentence()
            if i:
                text += self.rng.choices((" ", "\n", "\n\n"), (80, 12, 8))[0]
            spans += [(start + len(text), end + len(text), label) for start, end, label in part.spans]
            text += part.text
        return Example(text, spans)


def build_examples(split: str, count: int, seed: int, max_sentences: int = 3,
                   locales: tuple[str, ...] | None = None) -> list[Example]:
    synth = Synth(split, seed, locales)
    return [synth.paragraph(max_sentences) for _ in range(count)]


def name_samples(split: str, count: int, seed: int) -> list[str]:
    """Bare names, cities and companies of a split's locales (extra text for the vocabulary)."""
    synth = Synth(split, seed)
    samples = []
    for i in range(count):
        synth.fake = synth.fakers[i % len(synth.fakers)]
        samples.append(f"{synth._person('')[1]} {synth._loc('city')[1]} {synth._org('company')[1]}")
    return samples


def heldout_examples(count: int = 400, unseen_locales: bool = False) -> list[Example]:
    """The fixed held-out set that the model card and the test report on: templates that
    training never uses, filled from a seed that training never uses. With unseen_locales
    the names also come from locales that training never uses (a harder, second figure)."""
    locales = HELDOUT_LOCALES if unseen_locales else TRAIN_LOCALES
    return build_examples("heldout", count, HELDOUT_SEED, max_sentences=3, locales=locales)

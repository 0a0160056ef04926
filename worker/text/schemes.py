"""Label schemes read from a model's ``id2label``.

Every label gets a *role* and an entity *type*. The roles drive one grouping rule that covers
all schemes (see ``LabelScheme.continues``):

- ``B-X`` (BIO/IOB1/IOB2, BIOES, BILOU): BEGIN — always opens a new entity.
- ``I-X``: INSIDE — continues the open entity of type X, or opens one (the reference pipeline's
  repair for an ``I-`` without a ``B-``).
- ``E-X`` / ``L-X``: END — like INSIDE, and closes the entity after itself.
- ``S-X`` / ``U-X``: SINGLE — a one-item entity.
- plain labels (``PER``, ``O``, ``LABEL_3``): INSIDE of their own type, as in the reference
  pipeline: consecutive equal labels form one entity.

A model whose labels mix prefixed and plain names (other than the outside label ``O`` and the
ignored labels) or mix BIOES and BILOU prefixes is refused at start: the grouping would be a guess.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

OUTSIDE = "O"
_PREFIXED = re.compile(r"^([BIESLU])-(.+)$", re.DOTALL)


class Role(IntEnum):
    INSIDE = 0
    BEGIN = 1
    END = 2
    SINGLE = 3


_ROLE_OF_PREFIX = {
    "B": Role.BEGIN,
    "I": Role.INSIDE,
    "E": Role.END,
    "L": Role.END,
    "S": Role.SINGLE,
    "U": Role.SINGLE,
}
# Roles that open a new entity even after an item of the same type, and roles that close one.
OPENS = np.array([False, True, False, True])
CLOSES = np.array([False, False, True, True])


class LabelSchemeError(ValueError):
    """``id2label`` has a shape the decoder does not understand; the message names the labels."""


@dataclass(frozen=True, slots=True, eq=False)
class LabelScheme:
    name: str
    """``BIO`` (IOB1 and IOB2 decode alike), ``BIOES``, ``BILOU``, ``IO`` or ``plain``."""
    labels: tuple[str, ...]
    """Label of each class id."""
    types: tuple[str, ...]
    """Entity type names; ``type_of[i]`` indexes this."""
    role_of: npt.NDArray[np.int8]
    type_of: npt.NDArray[np.int32]
    continues: npt.NDArray[np.bool_]
    """``continues[previous, current]``: whether an item of class ``current`` right after one of
    class ``previous`` joins its group: iff both have the same type, ``current``'s role does not
    open a group (B-, S-) and ``previous``'s did not close one (E-, S-, L-, U-). For BIO this is
    exactly the reference pipeline's rule (same tag and not ``B-``)."""

    @property
    def num_labels(self) -> int:
        return len(self.labels)


def parse_scheme(id2label: Mapping[int, str], *, ignore_labels: Collection[str] = (OUTSIDE,)) -> LabelScheme:
    """Read the scheme of ``id2label``; raise ``LabelSchemeError`` naming what is not understood."""
    labels = _labels_by_id(id2label)
    exempt = {OUTSIDE, *ignore_labels}
    prefixed: dict[str, tuple[str, str]] = {}
    plain: list[str] = []
    for label in labels:
        match = _PREFIXED.match(label)
        if match:
            prefixed[label] = (match.group(1), match.group(2))
        elif label not in exempt:
            plain.append(label)
    if prefixed and plain:
        raise LabelSchemeError(
            "id2label mixes prefixed labels (B-/I-/E-/S-/L-/U-) with plain labels: "
            f"{', '.join(sorted(set(plain)))}; add them to ignore_labels if they mean 'outside'"
        )
    prefixes = {prefix for prefix, _ in prefixed.values()}
    name = _scheme_name(prefixes, prefixed) if prefixed else "plain"

    types: dict[str, int] = {}
    roles = np.zeros(len(labels), dtype=np.int8)
    type_of = np.zeros(len(labels), dtype=np.int32)
    for class_id, label in enumerate(labels):
        prefix, entity_type = prefixed.get(label, ("", label))
        roles[class_id] = _ROLE_OF_PREFIX.get(prefix, Role.INSIDE)
        type_of[class_id] = types.setdefault(entity_type, len(types))
    continues = (type_of[:, None] == type_of[None, :]) & ~OPENS[roles][None, :] & ~CLOSES[roles][:, None]
    return LabelScheme(name, tuple(labels), tuple(types), roles, type_of, continues)


def _labels_by_id(id2label: Mapping[int, str]) -> list[str]:
    try:
        keys = sorted(int(k) for k in id2label)
    except (TypeError, ValueError):
        raise LabelSchemeError(f"id2label keys must be class ids 0..n-1, got {list(id2label)!r}") from None
    if not keys or keys != list(range(len(keys))):
        raise LabelSchemeError(f"id2label keys must be class ids 0..n-1, got {keys!r}")
    by_int = {int(k): v for k, v in id2label.items()}
    labels = [by_int[i] for i in keys]
    bad = [repr(label) for label in labels if not isinstance(label, str) or not label.strip()]
    if bad:
        raise LabelSchemeError(f"id2label has empty or non-string labels: {', '.join(bad)}")
    return labels


def _scheme_name(prefixes: set[str], prefixed: Mapping[str, tuple[str, str]]) -> str:
    bioes, bilou = prefixes & {"E", "S"}, prefixes & {"L", "U"}
    if bioes and bilou:
        offending = sorted(label for label, (prefix, _) in prefixed.items() if prefix in "ESLU")
        raise LabelSchemeError(f"id2label mixes BIOES (E-, S-) and BILOU (L-, U-) labels: {', '.join(offending)}")
    if bioes:
        return "BIOES"
    if bilou:
        return "BILOU"
    return "IO" if prefixes == {"I"} else "BIO"

"""Output controls: which entities the output carries, under which names, with how many digits
of score, and the shape of the output record.

One module for every front end (``run``, ``annotate``, ``serve``): the ``Annotator`` passes each
document's decoded entities through ``EntityControls`` (so the entity metrics and limits see what
is published), and ``records.output_value`` lays out the record as ``OutputControls`` says. The
decoder itself knows nothing of them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.settings import OutputShape, Settings, SettingsError, env_name, label_renames

if TYPE_CHECKING:  # the record builders import this module; they need no numpy
    from worker.text.decode import Entity
    from worker.text.schemes import LabelScheme


@dataclass(frozen=True, slots=True)
class OutputControls:
    """The ``NER_*`` output controls, checked for form but not yet against a model's labels."""

    min_score: float = 0.0
    labels: frozenset[str] = frozenset()
    """Entity types to keep (the model's names, before renaming); empty: all."""
    renames: tuple[tuple[str, str], ...] = ()
    score_digits: int = 4
    shape: OutputShape = "document"
    entities_field: str = "entities"
    text_field: str = "text"
    """Where the text goes in the output of plain-text input (document shape)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> OutputControls:
        return cls(
            min_score=settings.min_score,
            labels=frozenset(settings.labels),
            renames=tuple(label_renames(settings.label_rename).items()),
            score_digits=settings.score_digits,
            shape=settings.output_shape,
            entities_field=settings.entities_field,
            text_field=settings.text_field,
        )

    def for_model(self, scheme: LabelScheme, ignored: Collection[str]) -> EntityControls:
        """Bind the controls to a model's labels; ``SettingsError`` naming the setting when they
        name an entity type the model does not have (it would silently match nothing)."""
        known = [name for name in scheme.types if name not in ignored]
        renames = dict(self.renames)
        for setting, named in (("labels", sorted(self.labels)), ("label_rename", list(renames))):
            unknown = [name for name in named if name not in known]
            if unknown:
                verb = "is not an entity type" if len(unknown) == 1 else "are not entity types"
                raise SettingsError(
                    f"{env_name(setting)}: {', '.join(unknown)} {verb} of the model (its types: {', '.join(known)})"
                )
        # Every label an entity can carry: the type (grouping strategies) and the full tag
        # (aggregation "none": B-PER), each mapped to its output name, or None when left out.
        output_label: dict[str, str | None] = {}
        for class_id, tag in enumerate(scheme.labels):
            entity_type = scheme.types[int(scheme.type_of[class_id])]
            kept = not self.labels or entity_type in self.labels
            new_type = renames.get(entity_type, entity_type)
            output_label[entity_type] = new_type if kept else None
            output_label[tag] = tag[: len(tag) - len(entity_type)] + new_type if kept else None
        return EntityControls(output_label, min_score=self.min_score, score_digits=self.score_digits)


class EntityControls:
    """The entity controls bound to one model: minimum score, label allow-list and renames,
    score rounding."""

    __slots__ = ("_digits", "_min_score", "_output_label", "_round_only")

    def __init__(self, output_label: dict[str, str | None], *, min_score: float, score_digits: int) -> None:
        self._output_label = output_label
        self._min_score = min_score
        self._digits = score_digits
        # The defaults (no threshold, every label kept under its own name) leave only rounding:
        # a loop a third the cost per entity, which the short-document CPU budget notices.
        self._round_only = min_score <= 0 and all(new == old for old, new in output_label.items())

    @property
    def rounding_only(self) -> int | None:
        """The score digits where rounding is all these controls do (the decoder can round in one
        pass for a whole batch, ``EntityDecoder.decode_batch``'s ``score_digits``); else None."""
        return self._digits if self._round_only else None

    def apply(self, entities: list[Entity]) -> list[Entity]:
        """The entities the output carries, renamed and rounded. The score threshold compares the
        unrounded score. Edits the decoder's fresh entity dicts in place (no copies per entity)."""
        if self._round_only:
            digits = self._digits
            for entity in entities:
                entity["score"] = round(float(entity["score"]), digits)
            return entities
        kept: list[Entity] = []
        for entity in entities:
            score = float(entity["score"])
            if score < self._min_score:
                continue
            label = self._output_label.get(entity["label"], entity["label"])
            if label is None:
                continue
            entity["label"] = label
            entity["score"] = round(score, self._digits)
            kept.append(entity)
        return kept

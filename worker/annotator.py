"""Texts in, entities out: tokenizer, engine and decoder behind one object.

The stream, the offline annotator and the HTTP server all annotate through this class, so the
three give the same entities for the same text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from worker.engine import Engine, create_engine
from worker.output import EntityControls, OutputControls
from worker.records import DECODE_FAILED, TOO_LARGE, TOO_MANY_ENTITIES, Document, ParseOptions, Rejection, parse_value
from worker.settings import Settings
from worker.text.decode import Entity, EntityDecoder
from worker.text.scores import WindowScores
from worker.text.tokenize import DocumentTokenizer, EncodedText, JoinedWords, TooLarge

Item = TypeVar("Item", bound="Prepared")


@dataclass(slots=True)
class Prepared:
    """A record value parsed and tokenized, or the reason it cannot be annotated.

    Front ends subclass it to carry their own fields along (a Kafka record, a file line);
    ``Annotator.prepare`` sets only the three below and reads none of the subclass's.
    """

    document: Document | None = None
    encoded: EncodedText | None = None
    rejection: Rejection | None = None

    @property
    def tokens(self) -> int:
        return sum(len(w) for w in self.encoded.windows) if self.encoded is not None else 0


@dataclass(frozen=True, slots=True)
class BatchResult:
    entities: list[list[Entity] | Rejection]
    engine_seconds: float
    windows: int
    tokens: int


class Annotator:
    def __init__(self, engine: Engine, tokenizer: DocumentTokenizer, decoder: EntityDecoder,
                 *, max_entities: int, parse: ParseOptions, controls: EntityControls) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.decoder = decoder
        self.max_entities = max_entities
        self.parse = parse
        """How ``prepare`` reads a record value (input format, text field, limits)."""
        self.controls = controls

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> Annotator:
        engine = engine if engine is not None else create_engine(settings)
        tokenizer = DocumentTokenizer.from_pretrained(
            settings.model,
            max_length=engine.max_length if not settings.max_length else min(settings.max_length, engine.max_length),
            stride=settings.stride,
            max_document_tokens=settings.max_document_tokens,
            revision=settings.model_revision,
        )
        decoder = EntityDecoder(
            engine.id2label,
            aggregation=settings.aggregation,
            ignore_labels=settings.ignore_labels,
            scores=engine.scores,
        )
        # Here, where the model's labels are first known: a label it does not have fails the start.
        controls = OutputControls.from_settings(settings).for_model(decoder.scheme, decoder.ignore_labels)
        return cls(engine, tokenizer, decoder, max_entities=settings.max_entities_per_document,
                   parse=ParseOptions.from_settings(settings), controls=controls)

    @property
    def model_name(self) -> str:
        return self.engine.name

    def tokenize(self, texts: Sequence[str | tuple[str, ...]]) -> list[EncodedText | Rejection]:
        """Each text (or pre-split words, ``Document.tokenizer_input``) encoded, or why not."""
        encoded: list[EncodedText | Rejection] = []
        for item in self.tokenizer.encode(texts):
            if isinstance(item, TooLarge):
                encoded.append(Rejection(TOO_LARGE, str(item)))
            else:
                encoded.append(item)
        return encoded

    def prepare(self, items: Sequence[Item], value: Callable[[Item], bytes | None]) -> None:
        """Parse ``value(item)`` of every item with the bound parse options and tokenize the valid
        ones in one tokenizer call.

        In place, on fresh items: afterwards each item has either ``rejection`` (it cannot be
        annotated; ``document`` is set too when only tokenization refused it) or ``document`` and
        ``encoded`` (ready for ``annotate_encoded``). Nothing else of the item is read or written.
        """
        valid: list[Item] = []
        options = self.parse
        for item in items:
            parsed = parse_value(value(item), options)
            if isinstance(parsed, Rejection):
                item.rejection = parsed
            else:
                item.document = parsed
                valid.append(item)
        encoded = self.tokenize([item.document.tokenizer_input for item in valid if item.document is not None])
        for item, result in zip(valid, encoded, strict=True):
            if isinstance(result, Rejection):
                item.rejection = result
            else:
                item.encoded = result

    async def annotate_encoded(self, documents: Sequence[EncodedText]) -> BatchResult:
        """One engine call for every window of every document, then decoding."""
        windows = [window for doc in documents for window in doc.windows]
        started = time.perf_counter()
        scores = await self.engine.classify(windows) if windows else []
        engine_seconds = time.perf_counter() - started
        return BatchResult(self.entities(documents, scores), engine_seconds, len(windows),
                           sum(len(w) for w in windows))

    def entities(self, documents: Sequence[EncodedText],
                 scores: Sequence[WindowScores]) -> list[list[Entity] | Rejection]:
        """Each document's entities as the output carries them (``controls`` applied), or why not:
        ``scores`` are the engine's for every window of every document, in order."""
        # Where the output controls only round scores, the decoder rounds them for the whole batch.
        digits = self.controls.rounding_only
        try:
            decoded = self.decoder.decode_batch(documents, scores, score_digits=digits)
        except ValueError as exc:  # scores that fit no document of the batch (an engine bug): all unusable
            decoded = [exc] * len(documents)
        results: list[list[Entity] | Rejection] = []
        apply, limit = self.controls.apply, self.max_entities
        for document, outcome in zip(documents, decoded, strict=True):
            if isinstance(outcome, ValueError):  # e.g. NaN scores: this record is unusable, the stream goes on
                results.append(Rejection(DECODE_FAILED, f"the engine's scores cannot be decoded: {outcome}"))
                continue
            entities = outcome if digits is not None else apply(outcome)
            if isinstance(document.encoding, JoinedWords):
                _add_word_indices(entities, document.encoding)
            if len(entities) > limit:
                results.append(Rejection(TOO_MANY_ENTITIES, f"{len(entities)} entities; the limit is {limit}"))
            else:
                results.append(entities)
        return results


def _add_word_indices(entities: list[Entity], words: JoinedWords) -> None:
    """Pre-split input: which given words each entity covers, next to its offsets into the
    joined words."""
    for entity in entities:
        entity["word_start"], entity["word_end"] = words.word_span(entity["start"], entity["end"])

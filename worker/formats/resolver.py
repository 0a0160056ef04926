"""Schemas by id, fetched once per registry and kept; the output schema registered once per input schema.

The stream calls ``SchemaResolver.resolve`` (asynchronous, the only place that talks to the
registry) on every fetched record value before parsing them; parsing then decodes from the
cache without waiting (``decode``), and the publisher encodes outputs the same way
(``encode``). An answer from the registry is final for a schema id and is kept, whether it is a
codec or a reason to reject the records that carry that id. A registry that does not answer is
retried until it does: the records wait (their partition is not committed past them), nothing
is dead-lettered for it, and ``reachable`` is false meanwhile (``/readyz``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from worker.formats.avro import AvroCodec, json_safe
from worker.formats.codec import Codec, InvalidPayload, SchemaProblem
from worker.formats.json_schema import JsonSchemaCodec
from worker.formats.protobuf import ProtobufCodec
from worker.formats.registry import (
    RegisteredSchema,
    RegistryUnavailable,
    SchemaRefused,
    SchemaRegistryClient,
    UnknownSchema,
)
from worker.formats.wire import WireFormatError, frame, read_message_indexes, unframe
from worker.retry import Backoff
from worker.settings import REGISTRY_FORMATS, RegistryFormat, Settings, SettingsError, SubjectStrategy, env_name

log = logging.getLogger(__name__)


# Machine reasons carried in the dead-letter header ``ner.error.reason``.
UNKNOWN_SCHEMA = "unknown_schema"
INVALID_SCHEMA = "invalid_schema"
OUTPUT_SCHEMA_REJECTED = "output_schema_rejected"
OUTPUT_ENCODING_FAILED = "output_encoding_failed"
INVALID_PAYLOAD = {"avro": "invalid_avro", "protobuf": "invalid_protobuf", "json-schema": "invalid_json_schema"}
_SCHEMA_TYPES = {"avro": "AVRO", "protobuf": "PROTOBUF", "json-schema": "JSON"}

SchemaKey = tuple[int, tuple[int, ...]]
"""A schema id and, for Protobuf, the message indexes: what one record's bytes name."""


class RecordRejected(ValueError):
    """A record cannot be decoded (or its output encoded); ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class _Resolved:
    codec: Codec
    output_id: int | None
    output_codec: Codec | None


@dataclass(frozen=True, slots=True)
class Decoded:
    record: dict[str, Any]
    schema: SchemaKey


class SchemaCache:
    """What the registry said about each schema key; decoding and encoding read only this."""

    def __init__(self, input_format: RegistryFormat, *, json_output: bool) -> None:
        self.input_format = input_format
        self.json_output = json_output
        self.entries: dict[SchemaKey, _Resolved | RecordRejected] = {}

    def key(self, value: bytes) -> SchemaKey:
        try:
            framed = unframe(value)
            if self.input_format != "protobuf":
                return framed.schema_id, ()
            indexes, _ = read_message_indexes(framed.payload)
        except WireFormatError as exc:
            raise RecordRejected(INVALID_PAYLOAD[self.input_format], f"not Confluent's wire format: {exc}") from None
        return framed.schema_id, indexes

    def decode(self, value: bytes) -> Decoded:
        key = self.key(value)
        entry = self.entries.get(key)
        if entry is None:
            raise RuntimeError(f"schema {key} was not resolved before decoding")  # a bug, not bad input
        if isinstance(entry, RecordRejected):
            raise entry
        payload = unframe(value).payload
        if self.input_format == "protobuf":
            payload = read_message_indexes(payload)[1]
        try:
            record = entry.codec.decode(payload)
        except InvalidPayload as exc:
            raise RecordRejected(INVALID_PAYLOAD[self.input_format], str(exc)) from None
        # JSON output: Avro's bytes and decimals as Avro's own JSON encoding writes them.
        return Decoded(json_safe(record) if self.json_output else record, key)

    def encode(self, key: SchemaKey, record: dict[str, Any]) -> bytes:
        entry = self.entries[key]
        assert isinstance(entry, _Resolved) and entry.output_codec is not None and entry.output_id is not None
        try:
            payload = entry.output_codec.encode(record)
        except (InvalidPayload, ValueError, TypeError) as exc:
            raise RecordRejected(OUTPUT_ENCODING_FAILED, f"the output cannot be encoded: {exc}") from None
        return frame(entry.output_id, entry.output_codec.message_indexes + payload)


CacheKey = tuple[str, str, bool, str, str]
_CACHES: dict[CacheKey, SchemaCache] = {}


def _cache_key(registry_url: str, input_format: str, json_output: bool, output_topic: str,
               subject_strategy: str) -> CacheKey:
    return registry_url, input_format, json_output, output_topic, subject_strategy


def cache_key(settings: Settings) -> CacheKey:
    """Which cache serves these settings' registry and formats (a schema id means the same schema
    for a registry's lifetime, and the output schema follows from it and the settings)."""
    return _cache_key(settings.schema_registry_url, settings.input_format, settings.output_format == "json",
                      settings.output_topic, settings.output_subject_strategy)


def cache_for(key: CacheKey) -> SchemaCache:
    """The process's cache for ``key``, filled by the ``SchemaResolver`` started for it."""
    try:
        return _CACHES[key]
    except KeyError:
        raise RuntimeError(f"no schema resolver was started for {key[0]}") from None


class SchemaResolver:
    def __init__(self, client: SchemaRegistryClient, input_format: RegistryFormat, *, json_output: bool,
                 output_topic: str, subject_strategy: SubjectStrategy, registry_url: str) -> None:
        self._client = client
        key = _cache_key(registry_url, input_format, json_output, output_topic, subject_strategy)
        self.cache = _CACHES.setdefault(key, SchemaCache(input_format, json_output=json_output))
        self._output_topic = output_topic
        self._strategy = subject_strategy
        self.reachable = True

    async def resolve(self, values: Iterable[bytes | None], stopping: asyncio.Event | None = None,
                      on_wait: Callable[[], None] | None = None) -> bool:
        """Fetch the schemas ``values`` name that are not known yet; retry while the registry does
        not answer (calling ``on_wait`` before each wait). False if ``stopping`` was set first
        (the values are then not all resolved)."""
        wanted: set[SchemaKey] = set()
        for value in values:
            try:
                key = self.cache.key(value) if value else None
            except RecordRejected:
                continue  # parsing rejects it with the same reason
            if key is not None and key not in self.cache.entries:
                wanted.add(key)
        for key in sorted(wanted):
            backoff = Backoff(base_s=0.5, max_s=5.0, jitter=True)
            while True:
                try:
                    self.cache.entries[key] = await self._load(key)
                    break
                except RegistryUnavailable as exc:
                    if self.reachable:
                        log.warning("schema registry unreachable; records wait until it answers: %s", exc)
                    self.reachable = False
                    if on_wait is not None:
                        on_wait()
                    if await _stopped_within(stopping, backoff.next_delay()):
                        return False
            if not self.reachable:
                log.info("schema registry reachable again")
            self.reachable = True
        return True

    async def close(self) -> None:
        await self._client.close()

    async def _load(self, key: SchemaKey) -> _Resolved | RecordRejected:
        schema_id, indexes = key
        fmt = self.cache.input_format
        try:
            schema = await self._client.schema_by_id(schema_id)
        except UnknownSchema as exc:
            return RecordRejected(UNKNOWN_SCHEMA, f"the registry has no schema with id {schema_id}: {exc}")
        if schema.schema_type != _SCHEMA_TYPES[fmt]:
            return RecordRejected(INVALID_PAYLOAD[fmt], f"schema id {schema_id} is a {schema.schema_type} schema, "
                                                        f"not {_SCHEMA_TYPES[fmt]}")
        try:
            imports = await self._imports(schema)
            codec = _codec(fmt, schema, indexes, imports)
        except UnknownSchema as exc:
            return RecordRejected(UNKNOWN_SCHEMA, f"a reference of schema id {schema_id} is missing: {exc}")
        except SchemaProblem as exc:
            return RecordRejected(INVALID_SCHEMA, f"schema id {schema_id}: {exc}")
        except InvalidPayload as exc:
            return RecordRejected(INVALID_PAYLOAD[fmt], str(exc))
        if self.cache.json_output:
            return _Resolved(codec, None, None)
        subject = self._subject(codec.record_name)
        try:
            output = codec.output_schema()
            output_id = await self._client.register(subject, output)
            output_codec = _codec(fmt, output, indexes, imports)
        except (SchemaProblem, SchemaRefused, UnknownSchema) as exc:
            return RecordRejected(OUTPUT_SCHEMA_REJECTED,
                                  f"the output schema for input schema id {schema_id} under {subject!r}: {exc}")
        log.info("schema id %d: output schema id %d registered under %s", schema_id, output_id, subject)
        return _Resolved(codec, output_id, output_codec)

    def _subject(self, record_name: str) -> str:
        if self._strategy == "record":
            return record_name
        if self._strategy == "topic-record":
            return f"{self._output_topic}-{record_name}"
        return f"{self._output_topic}-value"

    async def _imports(self, schema: RegisteredSchema) -> dict[str, str]:
        """The text of every schema ``schema`` references, by import name, recursively."""
        found: dict[str, str] = {}
        pending = list(schema.references)
        while pending:
            reference = pending.pop()
            if reference.name in found:
                continue
            referenced = await self._client.subject_version(reference.subject, reference.version)
            found[reference.name] = referenced.text
            pending.extend(referenced.references)
        return found


def _codec(fmt: RegistryFormat, schema: RegisteredSchema, indexes: tuple[int, ...],
           imports: Mapping[str, str]) -> Codec:
    if fmt == "avro":
        if imports:
            raise SchemaProblem("Avro schemas with references are not supported")
        return AvroCodec(schema)
    if fmt == "json-schema":
        if imports:
            raise SchemaProblem("JSON Schemas with references are not supported")
        return JsonSchemaCodec(schema)
    return ProtobufCodec(schema, indexes, imports)


async def _stopped_within(stopping: asyncio.Event | None, seconds: float) -> bool:
    if stopping is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True


def resolver_from_settings(settings: Settings) -> SchemaResolver | None:
    """The stream's resolver, or None when the input is not a registry format.

    Raises ``SettingsError`` naming the setting when the CA bundle, certificate or key does not load.
    """
    if settings.input_format not in REGISTRY_FORMATS:
        return None
    authorization = None
    if settings.schema_registry_username:
        password = settings.schema_registry_password.reveal() if settings.schema_registry_password else ""
        authorization = aiohttp.encode_basic_auth(settings.schema_registry_username, password)
    context = None
    if settings.schema_registry_url.startswith("https://") or settings.schema_registry_ssl_cafile:
        cafile = settings.schema_registry_ssl_cafile
        try:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        except ssl.SSLError as exc:
            raise SettingsError(f"{env_name('schema_registry_ssl_cafile')}: not a PEM CA bundle ({exc})") from None
        if settings.schema_registry_ssl_certfile:
            try:
                context.load_cert_chain(str(settings.schema_registry_ssl_certfile),
                                        str(settings.schema_registry_ssl_keyfile))
            except ssl.SSLError as exc:
                raise SettingsError(
                    f"{env_name('schema_registry_ssl_certfile')}, {env_name('schema_registry_ssl_keyfile')}: "
                    f"cannot load the client certificate and key ({exc})") from None
    client = SchemaRegistryClient(settings.schema_registry_url, authorization=authorization, ssl_context=context,
                                  timeout_s=settings.schema_registry_timeout_s)
    return SchemaResolver(client, settings.input_format, json_output=settings.output_format == "json",
                          output_topic=settings.output_topic, subject_strategy=settings.output_subject_strategy,
                          registry_url=settings.schema_registry_url)

"""A small asynchronous client of the Confluent Schema Registry REST API.

Only what the worker needs: a schema by id, a subject version (for references) and registering a
schema under a subject. Failures come in three kinds, because the stream treats them apart:
``UnknownSchema`` (the registry answered: no such schema; the record is dead-lettered),
``SchemaRefused`` (the registry refused a registration, e.g. incompatible or invalid) and
``RegistryUnavailable`` (no answer, a timeout, a 5xx, or refused credentials: retried, the
record waits).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson

SchemaType = Literal["AVRO", "PROTOBUF", "JSON"]
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Confluent's error codes for "no such schema id / subject / version".
_NOT_FOUND_CODES = {40401, 40402, 40403}


class RegistryUnavailable(RuntimeError):
    """The registry did not answer usefully; asking again later may succeed."""


class UnknownSchema(LookupError):
    """The registry has no such schema (id, subject or version)."""


class SchemaRefused(ValueError):
    """The registry refused to register a schema (incompatible, invalid)."""


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    schema_type: SchemaType
    text: str
    references: tuple[Reference, ...] = ()


class SchemaRegistryClient:
    def __init__(self, url: str, *, authorization: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout_s: float = 10.0) -> None:
        """``authorization``: an Authorization header value (basic auth), or None."""
        self.url = url.rstrip("/")
        self._headers = {"Accept": _CONTENT_TYPE, **({"Authorization": authorization} if authorization else {})}
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def schema_by_id(self, schema_id: int) -> RegisteredSchema:
        return _registered(await self._request("GET", f"/schemas/ids/{schema_id}"))

    async def subject_version(self, subject: str, version: int) -> RegisteredSchema:
        return _registered(await self._request("GET", f"/subjects/{quote(subject, safe='')}/versions/{version}"))

    async def register(self, subject: str, schema: RegisteredSchema) -> int:
        """Register ``schema`` under ``subject`` (a no-op returning the id when it is there already)."""
        body: dict[str, Any] = {"schema": schema.text, "schemaType": schema.schema_type}
        if schema.references:
            body["references"] = [{"name": r.name, "subject": r.subject, "version": r.version}
                                  for r in schema.references]
        answer = await self._request("POST", f"/subjects/{quote(subject, safe='')}/versions", body)
        return int(answer["id"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": _CONTENT_TYPE} if body is not None else None
        try:
            async with self._session.request(method, self.url + path, data=data, headers=headers,
                                             ssl=self._ssl) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RegistryUnavailable(f"{method} {self.url}{path}: {exc!r}") from exc
        answer = _json_object(raw)
        if status == 200:
            return answer
        detail = f"{method} {self.url}{path}: HTTP {status} {answer.get('message', raw[:200].decode(errors='replace'))}"
        if status == 404 or answer.get("error_code") in _NOT_FOUND_CODES:
            raise UnknownSchema(detail)
        if status in (409, 422):
            raise SchemaRefused(detail)
        # 401/403 (credentials may be rotated), 5xx, and anything unexpected: try again later.
        raise RegistryUnavailable(detail)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _registered(answer: dict[str, Any]) -> RegisteredSchema:
    schema_type: SchemaType
    match answer.get("schemaType") or "AVRO":  # Confluent leaves the type out for Avro
        case "AVRO" | "PROTOBUF" | "JSON" as known:
            schema_type = known
        case other:
            raise UnknownSchema(f"the registry answered with an unknown schema type {other!r}")
    references = tuple(Reference(str(r["name"]), str(r["subject"]), int(r["version"]))
                       for r in answer.get("references") or ())
    return RegisteredSchema(schema_type, str(answer["schema"]), references)

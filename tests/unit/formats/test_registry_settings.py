"""The Schema Registry settings: refused combinations name the setting; the client sends basic auth."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from worker.formats.registry import RegistryUnavailable
from worker.formats.resolver import resolver_from_settings
from worker.settings import Secret, SettingsError, load_settings


@pytest.mark.parametrize(("env", "named"), [
    ({"NER_INPUT_FORMAT": "avro"}, "NER_SCHEMA_REGISTRY_URL"),
    ({"NER_INPUT_FORMAT": "json", "NER_OUTPUT_FORMAT": "avro"}, "NER_OUTPUT_FORMAT"),
    ({"NER_INPUT_FORMAT": "protobuf", "NER_OUTPUT_FORMAT": "avro", "NER_SCHEMA_REGISTRY_URL": "http://r"},
     "NER_OUTPUT_FORMAT"),
    ({"NER_INPUT_FORMAT": "avro", "NER_SCHEMA_REGISTRY_URL": "registry:8081"}, "NER_SCHEMA_REGISTRY_URL"),
    ({"NER_SCHEMA_REGISTRY_SSL_CERTFILE": __file__}, "NER_SCHEMA_REGISTRY_SSL_KEYFILE"),
    ({"NER_SCHEMA_REGISTRY_SSL_CAFILE": "/nonexistent/ca.pem"}, "NER_SCHEMA_REGISTRY_SSL_CAFILE"),
    ({"NER_OUTPUT_SUBJECT_STRATEGY": "record-name"}, "NER_OUTPUT_SUBJECT_STRATEGY"),
])
def test_bad_registry_settings_fail_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_a_registry_format_reads_its_settings(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = load_settings({
        "NER_INPUT_FORMAT": "protobuf", "NER_OUTPUT_FORMAT": "protobuf",
        "NER_SCHEMA_REGISTRY_URL": "https://registry:8081", "NER_SCHEMA_REGISTRY_USERNAME": "ner",
        "NER_SCHEMA_REGISTRY_PASSWORD_FILE": str(password), "NER_OUTPUT_SUBJECT_STRATEGY": "topic-record",
    })
    assert settings.schema_registry_password == Secret("s3cret")
    assert "s3cret" not in repr(settings)
    assert resolver_from_settings(settings) is not None
    assert resolver_from_settings(load_settings({})) is None  # json input: no registry


def test_a_ca_bundle_that_is_not_pem_fails_naming_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    settings = load_settings({"NER_INPUT_FORMAT": "avro", "NER_SCHEMA_REGISTRY_URL": "https://registry",
                              "NER_SCHEMA_REGISTRY_SSL_CAFILE": str(bad)})
    with pytest.raises(SettingsError, match="NER_SCHEMA_REGISTRY_SSL_CAFILE"):
        resolver_from_settings(settings)


def test_basic_auth_is_sent_and_refused_credentials_are_retried_not_rejected(tmp_path: Path) -> None:
    schema = {"schema": orjson.dumps({"type": "record", "name": "R", "fields": []}).decode()}
    seen: list[str] = []

    async def by_id(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if seen[-1] != "Basic " + base64.b64encode(b"ner:s3cret").decode():
            return web.json_response({"error_code": 40101, "message": "unauthorized"}, status=401)
        return web.json_response(schema)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/schemas/ids/{id}", by_id)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        try:
            for password, ok in (("s3cret", True), ("wrong", False)):
                settings = load_settings({"NER_INPUT_FORMAT": "avro", "NER_SCHEMA_REGISTRY_URL": url,
                                          "NER_SCHEMA_REGISTRY_USERNAME": "ner",
                                          "NER_SCHEMA_REGISTRY_PASSWORD": password})
                resolver = resolver_from_settings(settings)
                assert resolver is not None
                client = resolver._client
                try:
                    if ok:
                        assert (await client.schema_by_id(1)).schema_type == "AVRO"
                    else:
                        with pytest.raises(RegistryUnavailable, match="401"):
                            await client.schema_by_id(1)
                finally:
                    await resolver.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert len(seen) == 2


def test_annotate_refuses_a_registry_format_for_a_file_and_says_what_to_pass() -> None:
    from tests.unit.test_offline_cli import run_annotate

    result = run_annotate("-", env={"NER_INPUT_FORMAT": "avro", "NER_SCHEMA_REGISTRY_URL": "http://registry"},
                          stdin=b'{"text": "Ada"}\n')
    assert result.returncode == 2
    assert b"NER_INPUT_FORMAT=avro is for Kafka records" in result.stderr
    assert b"--format json" in result.stderr

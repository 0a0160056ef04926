import asyncio
from pathlib import Path

import pytest

from worker.settings import Secret, SettingsError, env_name, load_settings, setting_fields
from worker.stream.kafka_security import kafka_security_kwargs


def test_defaults_load_from_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings.engine == "hf"
    assert settings.ignore_labels == ("O",)
    assert Path(settings.model, "config.json").is_file()


def test_values_are_converted_to_their_types() -> None:
    settings = load_settings({
        "NER_MAX_BATCH_DOCUMENTS": "8", "NER_MAX_BATCH_WAIT_MS": "0", "NER_VLLM_ENFORCE_EAGER": "true",
        "NER_IGNORE_LABELS": "O, MISC", "NER_AGGREGATION": "first", "NER_DRAIN_TIMEOUT_S": "2.5",
    })
    assert settings.max_batch_documents == 8
    assert settings.max_batch_wait_ms == 0
    assert settings.vllm_enforce_eager is True
    assert settings.ignore_labels == ("O", "MISC")
    assert settings.aggregation == "first"
    assert settings.drain_timeout_s == 2.5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NER_MAX_BATCH_DOCUMENTS": "many"}, "NER_MAX_BATCH_DOCUMENTS"),
        ({"NER_MAX_BATCH_DOCUMENTS": "0"}, "NER_MAX_BATCH_DOCUMENTS"),
        ({"NER_ENGINE": "tensorrt"}, "NER_ENGINE"),
        ({"NER_VLLM_ENFORCE_EAGER": "maybe"}, "NER_VLLM_ENFORCE_EAGER"),
        ({"NER_MAX_BACH_DOCUMENTS": "8"}, "NER_MAX_BACH_DOCUMENTS"),
        ({"NER_ENGINE": "remote"}, "NER_REMOTE_URL"),
        ({"NER_INPUT_TOPIC": "same", "NER_OUTPUT_TOPIC": "same"}, "NER_INPUT_TOPIC"),
        ({"NER_SECURITY_PROTOCOL": "SASL_SSL"}, "NER_SASL_USERNAME"),
        ({"NER_SSL_CAFILE": "/nonexistent/ca.pem"}, "NER_SSL_CAFILE"),
        ({"NER_HTTP_PORT": "70000"}, "NER_HTTP_PORT"),
    ],
)
def test_a_bad_setting_fails_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_secret_from_a_file_is_read_and_never_shown(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("s3cr3t-value\n")
    settings = load_settings({
        "NER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "NER_SASL_USERNAME": "alice",
        "NER_SASL_PASSWORD_FILE": str(secret_file),
    })
    assert settings.sasl_password == Secret("s3cr3t-value")
    assert "s3cr3t-value" not in repr(settings)
    assert kafka_security_kwargs(settings)["sasl_plain_password"] == "s3cr3t-value"


def test_secret_given_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("x")
    with pytest.raises(SettingsError, match="NER_SASL_PASSWORD"):
        load_settings({"NER_SASL_PASSWORD": "x", "NER_SASL_PASSWORD_FILE": str(tmp_path / "p")})


def test_every_field_is_documented() -> None:
    for field in setting_fields():
        assert field.metadata.get("doc"), f"{env_name(field.name)} has no documentation"


def test_a_drain_timeout_as_long_as_the_rebalance_timeout_is_refused_naming_both() -> None:
    # The rebalance timeout is NER_MAX_POLL_INTERVAL_MS (the worker sets aiokafka's
    # rebalance_timeout_ms to it): a revoke drain past it gets the worker evicted mid-drain.
    with pytest.raises(SettingsError, match=r"NER_DRAIN_TIMEOUT_S.*NER_MAX_POLL_INTERVAL_MS"):
        load_settings({"NER_DRAIN_TIMEOUT_S": "30", "NER_MAX_POLL_INTERVAL_MS": "30000"})
    with pytest.raises(SettingsError, match=r"NER_DRAIN_TIMEOUT_S.*NER_MAX_POLL_INTERVAL_MS"):
        load_settings({"NER_DRAIN_TIMEOUT_S": "400"})


def test_the_chaos_settings_pass_the_drain_rule() -> None:
    settings = load_settings({"NER_SESSION_TIMEOUT_MS": "6000", "NER_DRAIN_TIMEOUT_S": "10"})
    assert settings.drain_timeout_s * 1000 < settings.max_poll_interval_ms


def test_the_consumer_rebalance_timeout_is_the_max_poll_interval() -> None:
    from worker.stream.connect import client_kwargs, make_clients

    settings = load_settings({"NER_MAX_POLL_INTERVAL_MS": "45000", "NER_SESSION_TIMEOUT_MS": "6000"})

    async def rebalance_timeout_ms() -> int:  # aiokafka builds its clients inside a running loop
        consumer = make_clients(settings, client_kwargs(settings)).consumer
        return int(consumer._rebalance_timeout_ms)

    assert asyncio.run(rebalance_timeout_ms()) == 45000  # aiokafka's own default: the session timeout

"""The worker's one typed settings object, read from ``NER_*`` environment variables.

Every field maps 1:1 to an environment variable (``NER_`` + the field name in upper case) and
to a value of the Helm chart. A wrong or unknown setting fails at start with a message that
names the variable: a typo such as ``NER_MAX_BACH_DOCS`` must not silently fall back to a default.
Secrets (``Secret``) are read from the variable itself or from a ``…_FILE`` variable that names
a mounted file, and never appear in ``repr`` or logs. docs/settings.md lists every setting (it is
generated from this module: ``ner-worker settings --markdown``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from worker.bundled_model import TINY_NER_PATH
from worker.text.kinds import Aggregation

ENV_PREFIX = "NER_"
FILE_SUFFIX = "_FILE"
SETTINGS_PAGE = "docs/settings.md"


class SettingsError(ValueError):
    """A setting is missing, malformed or inconsistent; the message names the variable."""


class Secret:
    """A string that never shows itself in ``repr``/``str`` (and so never in logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _doc(text: str, **extra: Any) -> Any:
    return {"doc": text, **extra}


EngineName = Literal["hf", "vllm", "remote"]
Delivery = Literal["at-least-once", "exactly-once"]
InputFormat = Literal["json", "text", "avro", "protobuf", "json-schema"]
OutputFormat = Literal["json", "avro", "protobuf", "json-schema"]
SubjectStrategy = Literal["topic", "record", "topic-record"]
RegistryFormat = Literal["avro", "protobuf", "json-schema"]
REGISTRY_FORMATS: tuple[RegistryFormat, ...] = ("avro", "protobuf", "json-schema")
"""The input formats read with a schema registry (Confluent's wire format)."""
OutputPartitioning = Literal["input", "key"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
OffsetReset = Literal["earliest", "latest"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
OutputShape = Literal["document", "entities"]


@dataclass(frozen=True)
class Settings:
    # --- Kafka ---------------------------------------------------------------------------
    kafka_bootstrap_servers: str = field(
        default="127.0.0.1:9092", metadata=_doc("Comma-separated Kafka bootstrap servers.")
    )
    input_topic: str = field(default="ner.input", metadata=_doc("Topic the documents are read from."))
    output_topic: str = field(default="ner.output", metadata=_doc("Topic annotated documents go to."))
    dead_letter_topic: str = field(
        default="ner.dead-letter",
        metadata=_doc("Topic for records that cannot be processed (original bytes + reason headers)."),
    )
    group_id: str = field(default="kafka-ner-worker", metadata=_doc("Kafka consumer group id."))
    client_id: str = field(default="kafka-ner-worker", metadata=_doc("Kafka client id prefix."))
    auto_offset_reset: OffsetReset = field(
        default="earliest", metadata=_doc("Where a new group starts reading: earliest or latest.")
    )
    output_partitioning: OutputPartitioning = field(
        default="input",
        metadata=_doc(
            "input: an output record goes to the input record's partition number (modulo the "
            "output topic's partitions), keeping per-partition order end to end; key: Kafka's "
            "default key hashing."
        ),
    )
    delivery: Delivery = field(
        default="at-least-once",
        metadata=_doc("at-least-once, or exactly-once with Kafka transactions."),
    )
    transactional_id_prefix: str = field(
        default="kafka-ner-worker",
        metadata=_doc("Prefix of transactional ids in exactly-once mode (one id per input partition)."),
    )
    transaction_timeout_ms: int = field(
        default=60000,
        metadata=_doc("Exactly-once: the broker aborts a transaction left open this long (a crashed worker).",
                      min=1000),
    )
    session_timeout_ms: int = field(default=30000, metadata=_doc("Consumer group session timeout.", min=6000))
    max_poll_interval_ms: int = field(
        default=300000,
        metadata=_doc("Longest pause between polls before the group evicts the worker; also the rebalance "
                      "timeout (NER_DRAIN_TIMEOUT_S must be shorter).", min=1000),
    )
    commit_interval_ms: int = field(
        default=1000, metadata=_doc("How often acknowledged offsets are committed.", min=10)
    )
    security_protocol: SecurityProtocol = field(
        default="PLAINTEXT", metadata=_doc("PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    )
    sasl_mechanism: SaslMechanism = field(
        default="PLAIN", metadata=_doc("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    )
    sasl_username: str = field(default="", metadata=_doc("SASL user name."))
    sasl_password: Secret | None = field(
        default=None, metadata=_doc("SASL password (or NER_SASL_PASSWORD_FILE naming a file).", secret=True)
    )
    ssl_cafile: Path | None = field(default=None, metadata=_doc("CA bundle (PEM) that signs the brokers."))
    ssl_certfile: Path | None = field(default=None, metadata=_doc("Client certificate (PEM) for mTLS."))
    ssl_keyfile: Path | None = field(default=None, metadata=_doc("Client private key (PEM) for mTLS."))
    ssl_key_password: Secret | None = field(
        default=None, metadata=_doc("Password of the client key, if encrypted.", secret=True)
    )
    ssl_check_hostname: bool = field(default=True, metadata=_doc("Verify the broker's host name."))
    connect_retry_timeout_s: float = field(
        default=60.0, metadata=_doc("Give up (exit non-zero) when the broker stays unreachable this long.", min=1)
    )

    # --- Input contract -------------------------------------------------------------------
    input_format: InputFormat = field(
        default="json",
        metadata=_doc("json: a JSON object with a text field; text: the whole value is the text; avro, protobuf, "
                      "json-schema: Confluent's wire format, the writer's schema read from NER_SCHEMA_REGISTRY_URL "
                      "(stream only)."),
    )
    text_field: str = field(default="text", metadata=_doc("Dotted path of the text in a JSON input."))
    words_field: str = field(
        default="words",
        metadata=_doc("Dotted path of pre-split input in a JSON object without the text field: a list of words, "
                      "annotated as the words joined by single spaces (entities gain word_start/word_end); "
                      "empty: off."),
    )
    max_record_bytes: int = field(
        default=1_048_576, metadata=_doc("Larger records are dead-lettered as too_large.", min=1)
    )
    max_text_chars: int = field(
        default=200_000, metadata=_doc("Longer texts are dead-lettered as too_large.", min=1)
    )
    max_document_tokens: int = field(
        default=65_536, metadata=_doc("Documents with more tokens are dead-lettered as too_large.", min=1)
    )
    max_produce_bytes: int = field(
        default=1_048_576,
        metadata=_doc("Largest record the producer writes; keep it within the topics' max.message.bytes.", min=1024),
    )
    max_json_depth: int = field(
        default=64, metadata=_doc("Deeper JSON nesting is dead-lettered as too_deep.", min=1)
    )
    max_entities_per_document: int = field(
        default=10_000, metadata=_doc("Documents with more entities are dead-lettered as too_many_entities.", min=1)
    )

    # --- Schema Registry (NER_INPUT_FORMAT avro, protobuf, json-schema) ------------------
    output_format: OutputFormat = field(
        default="json",
        metadata=_doc("json: the output is JSON; avro, protobuf, json-schema (the input's format): the input's "
                      "schema plus entities and ner, registered as a new subject version, in Confluent's wire "
                      "format."),
    )
    schema_registry_url: str = field(
        default="",
        metadata=_doc("Base URL of a Confluent-API schema registry (e.g. http://registry:8081); required by the "
                      "avro, protobuf and json-schema formats."),
    )
    schema_registry_username: str = field(default="", metadata=_doc("Schema registry basic-auth user name."))
    schema_registry_password: Secret | None = field(
        default=None,
        metadata=_doc("Schema registry basic-auth password (or NER_SCHEMA_REGISTRY_PASSWORD_FILE naming a file).",
                      secret=True),
    )
    schema_registry_ssl_cafile: Path | None = field(
        default=None, metadata=_doc("CA bundle (PEM) that signs the schema registry's certificate.")
    )
    schema_registry_ssl_certfile: Path | None = field(
        default=None, metadata=_doc("Client certificate (PEM) for mTLS to the schema registry.")
    )
    schema_registry_ssl_keyfile: Path | None = field(
        default=None, metadata=_doc("Client private key (PEM, unencrypted) for mTLS to the schema registry.")
    )
    schema_registry_timeout_s: float = field(
        default=10.0, metadata=_doc("Timeout of one schema registry request (unanswered requests are retried).",
                                    min=0.1)
    )
    output_subject_strategy: SubjectStrategy = field(
        default="topic",
        metadata=_doc("Subject of the output schema: topic (<output topic>-value), record (the record's full "
                      "name) or topic-record (<output topic>-<record name>)."),
    )

    # --- Model and decoding ---------------------------------------------------------------
    engine: EngineName = field(default="hf", metadata=_doc("hf (transformers), vllm (GPU) or remote (a vLLM server)."))
    model: str = field(
        default=str(TINY_NER_PATH),
        metadata=_doc(
            "Model folder or Hugging Face id (an id is downloaded into HF_HOME on first use; with HF_HUB_OFFLINE=1 "
            "it must already be in the cache)."
        ),
    )
    device: Device = field(default="auto", metadata=_doc("hf engine device: auto, cpu or cuda."))
    dtype: Dtype = field(default="auto", metadata=_doc("Engine dtype: auto, float32, bfloat16 or float16."))
    max_length: int = field(
        default=0, metadata=_doc("Tokens per window incl. special tokens; 0 = the model's maximum.", min=0)
    )
    stride: int = field(
        default=32, metadata=_doc("Overlap in tokens between consecutive windows of a long document.", min=0)
    )
    aggregation: Aggregation = field(
        default="simple", metadata=_doc("none, simple, first, average or max (Hugging Face pipeline semantics).")
    )
    ignore_labels: tuple[str, ...] = field(
        default=("O",), metadata=_doc("Comma-separated labels never reported as entities.")
    )

    # --- Output controls ------------------------------------------------------------------
    min_score: float = field(
        default=0.0, metadata=_doc("Entities scoring below this are left out of the output.", min=0, max=1)
    )
    labels: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Comma-separated entity types to keep, as the model names them (PER, not B-PER); empty = all."),
    )
    label_rename: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Comma-separated renames of entity types, MODEL=OUTPUT (PER=person,ORG=organization)."),
    )
    score_digits: int = field(
        default=4, metadata=_doc("Entity scores are rounded to this many decimal places.", min=0, max=9)
    )
    output_shape: OutputShape = field(
        default="document",
        metadata=_doc("document: the input object plus entities and ner; entities: only key, entities and ner."),
    )
    entities_field: str = field(default="entities", metadata=_doc("Name of the output field holding the entities."))
    # --- Model revision -------------------------------------------------------------------
    model_revision: str = field(
        default="",
        metadata=_doc("Branch, tag or commit of the Hugging Face id in NER_MODEL (hf engine); "
                      "empty: the default branch."),
    )

    # --- Batching and backpressure --------------------------------------------------------
    max_batch_documents: int = field(
        default=256,
        metadata=_doc("Documents per engine batch (small batches cost several times the CPU per document).", min=1),
    )
    max_batch_tokens: int = field(default=16384, metadata=_doc("Tokens per engine batch.", min=1))
    max_batch_wait_ms: int = field(
        default=20, metadata=_doc("Longest wait to fill a batch before it is sent anyway.", min=0)
    )
    max_inflight_records: int = field(
        default=2048, metadata=_doc("Records read but not yet committed; partitions pause beyond.", min=1)
    )
    max_inflight_tokens: int = field(
        default=262_144, metadata=_doc("Tokens read but not yet published; partitions pause beyond.", min=1)
    )
    max_concurrent_batches: int = field(
        default=2,
        metadata=_doc("Engine batches in flight at once (overlaps Kafka and CPU work with the engine).", min=1),
    )
    drain_timeout_s: float = field(
        default=20.0,
        metadata=_doc("On SIGTERM or revoke: time to finish in-flight work and commit; shorter than "
                      "NER_MAX_POLL_INTERVAL_MS (the rebalance timeout).", min=0),
    )
    engine_timeout_s: float = field(
        default=120.0,
        metadata=_doc("Longest wait for one engine batch; a batch that takes longer counts as a failed attempt "
                      "(retried, then the worker stops).", min=0.1),
    )

    # --- Stream processes -----------------------------------------------------------------
    processes: int = field(
        default=0,
        metadata=_doc(
            "Stream processes of `run`, each a member of the consumer group sharing one engine; "
            "0 = derived from the engine and the CPU cores (1 for the transformers engine on a CPU).",
            min=0,
        ),
    )

    # --- vLLM engine ----------------------------------------------------------------------
    engine_replicas: int = field(
        default=4, metadata=_doc("vLLM engine processes sharing one GPU (one engine is CPU-bound).", min=1)
    )
    vllm_max_model_len: int = field(default=0, metadata=_doc("vLLM max_model_len; 0 = the model's.", min=0))
    vllm_max_num_batched_tokens: int = field(
        default=65536, metadata=_doc("vLLM max_num_batched_tokens.", min=1)
    )
    vllm_max_num_seqs: int = field(default=1024, metadata=_doc("vLLM max_num_seqs.", min=1))
    vllm_gpu_memory_utilization: float = field(
        default=0.8, metadata=_doc("GPU memory share for all vLLM replicas together.", min=0.05, max=0.98)
    )
    # Compiled (vLLM's own default) since it measured faster on an H200: 8 BERT-base replicas scored
    # 1.97 M tokens/s compiled against 1.80 M eager, on fewer CPU cores (bench/results/engine_host_h200_*.json).
    vllm_enforce_eager: bool = field(default=False, metadata=_doc("Disable CUDA graphs / torch.compile."))
    vllm_attention_backend: str = field(
        default="", metadata=_doc("vLLM attention backend (e.g. FLASH_ATTN, TRITON_ATTN); empty = vLLM's choice.")
    )

    # --- Remote engine --------------------------------------------------------------------
    remote_url: str = field(default="", metadata=_doc("Base URL of a vLLM server (remote engine)."))
    remote_timeout_s: float = field(default=30.0, metadata=_doc("Per-request timeout of the remote engine.", min=0.1))
    remote_max_retries: int = field(default=5, metadata=_doc("Retries on 5xx/timeouts (with backoff).", min=0))

    # --- HTTP and logs --------------------------------------------------------------------
    http_host: str = field(default="0.0.0.0", metadata=_doc("Address of /metrics, /healthz, /readyz."))
    http_port: int = field(
        default=8080, metadata=_doc("Port of /metrics, /healthz, /readyz (0 = off).", min=0, max=65535)
    )
    log_level: LogLevel = field(default="INFO", metadata=_doc("DEBUG, INFO, WARNING or ERROR."))
    log_json: bool = field(default=False, metadata=_doc("Log one JSON object per line."))

    # --- Not a setting: where the values came from ---------------------------------------
    set_by_environment: frozenset[str] = field(
        default=frozenset(), repr=False, compare=False, metadata={"provenance": True}
    )
    """The fields whose value a variable gave (the others are defaults); see ``load_settings``."""


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """Every setting, in the order the settings page lists them."""
    return tuple(f for f in dataclasses.fields(Settings) if not f.metadata.get("provenance"))


def variable_names() -> list[str]:
    """Every ``NER_*`` variable the worker reads (secrets also as ``…_FILE``)."""
    names = [env_name(f.name) for f in setting_fields()]
    return names + [env_name(f.name) + FILE_SUFFIX for f in setting_fields() if f.metadata.get("secret")]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from the environment; raise ``SettingsError`` naming the culprit.

    The result's ``set_by_environment`` names the fields a variable set, so that a command can
    tell a value the user chose from a default (``annotate`` has its own batch defaults).
    """
    env = os.environ if environ is None else environ
    known = variable_names()
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(_with_suggestion(k, known) for k in unknown)} "
                            f"(every setting is listed in {SETTINGS_PAGE} and by `ner-worker settings`)")
    hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in setting_fields():
        name = env_name(f.name)
        raw = env.get(name)
        if f.metadata.get("secret") and env.get(name + FILE_SUFFIX):
            if raw is not None:
                raise SettingsError(f"{name} and {name}{FILE_SUFFIX} are both set; use one")
            raw = _read_secret_file(name + FILE_SUFFIX, env[name + FILE_SUFFIX])
        if raw is None:
            continue
        values[f.name] = _convert(name, raw, hints[f.name], f.metadata)
    settings = Settings(**values, set_by_environment=frozenset(values))
    _check_consistency(settings)
    return settings


def _with_suggestion(unknown: str, known: list[str]) -> str:
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.8)
    return f"{unknown} (did you mean {close[0]}?)" if close else unknown


def _read_secret_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read the file it names ({exc.strerror})") from None


def _convert(name: str, raw: str, hint: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return None if raw == "" else _convert(name, raw, inner, meta)
    if origin is Literal:
        choices = typing.get_args(hint)
        if raw not in choices:
            raise SettingsError(f"{name}: {raw!r} is not one of {', '.join(map(str, choices))}")
        return raw
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}: expected true or false, got {raw!r}")
    if hint in (int, float):
        try:
            number = hint(raw.strip())
        except ValueError:
            kind = "an integer" if hint is int else "a number"
            raise SettingsError(f"{name}: expected {kind}, got {raw!r}") from None
        if "min" in meta and number < meta["min"]:
            raise SettingsError(f"{name}: must be >= {meta['min']}, got {number}")
        if "max" in meta and number > meta["max"]:
            raise SettingsError(f"{name}: must be <= {meta['max']}, got {number}")
        return number
    if hint is Path:
        return Path(raw)
    if hint is Secret:
        return Secret(raw)
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _check_consistency(s: Settings) -> None:
    if not s.kafka_bootstrap_servers.strip():
        raise SettingsError(f"{env_name('kafka_bootstrap_servers')}: must not be empty")
    for topic_field in ("input_topic", "output_topic", "dead_letter_topic"):
        if not getattr(s, topic_field).strip():
            raise SettingsError(f"{env_name(topic_field)}: must not be empty")
    if s.input_topic in (s.output_topic, s.dead_letter_topic):
        raise SettingsError(f"{env_name('input_topic')}: must differ from the output and dead-letter topics")
    if s.max_length and s.stride >= s.max_length - 2:
        raise SettingsError(f"{env_name('stride')}: must be smaller than NER_MAX_LENGTH minus special tokens")
    if s.model_revision and s.engine != "hf":
        raise SettingsError(
            f"{env_name('model_revision')}: only the hf engine takes a revision (the {s.engine} engine's model is "
            "loaded elsewhere); download that revision into a folder (huggingface-cli download MODEL --revision "
            "REV --local-dir DIR) and set NER_MODEL to the folder"
        )
    if s.drain_timeout_s * 1000 >= s.max_poll_interval_ms:
        # The consumer's rebalance timeout is the poll interval: a revoke drain must end (and
        # commit) before the group gives up waiting for this worker to rejoin.
        raise SettingsError(
            f"{env_name('drain_timeout_s')}: must be shorter than the rebalance timeout "
            f"{env_name('max_poll_interval_ms')} ({s.drain_timeout_s:g} s >= {s.max_poll_interval_ms} ms)"
        )
    if s.engine == "remote" and not s.remote_url:
        raise SettingsError(f"{env_name('remote_url')}: required when NER_ENGINE=remote")
    if s.security_protocol.startswith("SASL") and not s.sasl_username:
        raise SettingsError(f"{env_name('sasl_username')}: required with NER_SECURITY_PROTOCOL={s.security_protocol}")
    if s.ssl_certfile and not s.ssl_keyfile:
        raise SettingsError(f"{env_name('ssl_keyfile')}: required when NER_SSL_CERTFILE is set")
    _check_schema_registry(s)
    for path_field in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "schema_registry_ssl_cafile",
                       "schema_registry_ssl_certfile", "schema_registry_ssl_keyfile"):
        path = getattr(s, path_field)
        if path is not None and not path.is_file():
            raise SettingsError(f"{env_name(path_field)}: no such file: {path}")
    _check_output_controls(s)


# --- Output controls -----------------------------------------------------------------------
# The scheme prefixes of token tags (B-PER, I-PER, E-, S-, L-, U-). The output controls name
# entity *types*; a tag there would match nothing and silently keep or rename nothing.
_TAG = re.compile(r"^([BIESLU])-(.+)$", re.DOTALL)
# Fields of the entities-only output that the entities field must not overwrite.
_ENTITIES_ONLY_FIELDS = ("key", "key_base64", "ner")


def label_renames(entries: tuple[str, ...]) -> dict[str, str]:
    """``NER_LABEL_RENAME``'s ``MODEL=OUTPUT`` entries as a map; ``SettingsError`` when malformed."""
    name = env_name("label_rename")
    renames: dict[str, str] = {}
    for entry in entries:
        old, equals, new = (part.strip() for part in entry.partition("="))
        if not equals or not old or not new or "=" in new:
            raise SettingsError(f"{name}: {entry!r} is not MODEL=OUTPUT (e.g. PER=person)")
        _refuse_tag(name, old)
        if old in renames:
            raise SettingsError(f"{name}: {old} is renamed twice")
        renames[old] = new
    return renames


def _refuse_tag(name: str, label: str) -> None:
    tag = _TAG.match(label)
    if tag:
        raise SettingsError(
            f"{name}: {label!r} is a token tag, not an entity type; write {tag.group(2)!r}, which covers its tags"
        )


def _check_output_controls(s: Settings) -> None:
    for label in s.labels:
        _refuse_tag(env_name("labels"), label)
    label_renames(s.label_rename)
    if not s.entities_field.strip():
        raise SettingsError(f"{env_name('entities_field')}: must not be empty")
    if s.entities_field in _ENTITIES_ONLY_FIELDS:
        raise SettingsError(f"{env_name('entities_field')}: {s.entities_field!r} is taken by the output's own fields")
    if s.entities_field == s.text_field:
        raise SettingsError(f"{env_name('entities_field')}: must differ from NER_TEXT_FIELD ({s.text_field!r})")
    if s.words_field in (s.text_field, s.entities_field):
        raise SettingsError(f"{env_name('words_field')}: must differ from NER_TEXT_FIELD and NER_ENTITIES_FIELD")


def _check_schema_registry(s: Settings) -> None:
    registry_input = s.input_format in REGISTRY_FORMATS
    if registry_input and not s.schema_registry_url:
        raise SettingsError(f"{env_name('schema_registry_url')}: required with NER_INPUT_FORMAT={s.input_format}")
    if s.output_format != "json" and s.output_format != s.input_format:
        raise SettingsError(f"{env_name('output_format')}: {s.output_format} needs NER_INPUT_FORMAT={s.output_format} "
                            f"(the output extends the input's schema); got {s.input_format}")
    if s.output_format != "json" and (s.output_shape != "document" or s.entities_field != "entities"):
        # The registered output schema is the input's plus `entities` and `ner`: other shapes or
        # field names would not match it and every output would become a dead letter.
        raise SettingsError(f"{env_name('output_format')}: {s.output_format} output writes the document with an "
                            "`entities` field; NER_OUTPUT_SHAPE=entities and NER_ENTITIES_FIELD need "
                            "NER_OUTPUT_FORMAT=json")
    if s.schema_registry_url and not s.schema_registry_url.startswith(("http://", "https://")):
        raise SettingsError(f"{env_name('schema_registry_url')}: expected an http:// or https:// URL, "
                            f"got {s.schema_registry_url!r}")
    if s.schema_registry_ssl_certfile and not s.schema_registry_ssl_keyfile:
        raise SettingsError(f"{env_name('schema_registry_ssl_keyfile')}: required when "
                            "NER_SCHEMA_REGISTRY_SSL_CERTFILE is set")

"""The settings as text: the effective values (``ner-worker settings``) and the reference page
docs/settings.md (``ner-worker settings --markdown``), both generated from ``worker.settings``.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import Field
from pathlib import Path
from typing import Any, Literal

from worker.bundled_model import TINY_NER_PATH
from worker.settings import FILE_SUFFIX, SETTINGS_PAGE, Secret, Settings, env_name, setting_fields

MASK = "**********"
SHIPPED_MODEL = "(the demo model shipped with the package)"


def effective_listing(settings: Settings) -> str:
    """Every setting with the value the worker uses, secrets masked, those the environment set marked."""
    lines = []
    for f in setting_fields():
        marker = "  (set by the environment)" if f.name in settings.set_by_environment else ""
        lines.append(f"{env_name(f.name)}={_shown(getattr(settings, f.name))}{marker}")
        lines.append(f"    {f.metadata.get('doc', '')}")
    return "\n".join(lines) + "\n"


def _shown(value: Any) -> str:
    return MASK if isinstance(value, Secret) else env_text(value)


def env_text(value: Any) -> str:
    """A setting's value written as its ``NER_*`` variable takes it (secrets are not handled here)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def markdown() -> str:
    """The text of docs/settings.md."""
    hints = typing.get_type_hints(Settings)
    out = [
        "# Settings",
        "",
        f"<!-- Generated from worker/settings.py by `ner-worker settings --markdown`; do not edit. "
        f"A test checks that {SETTINGS_PAGE} equals the generated text. -->",
        "",
        "Every command (`run`, `annotate`, `serve`) reads its settings from these environment variables, once, "
        "at start. A variable that starts with `NER_` but is not listed here, or a value that does not fit, "
        "stops the command with exit status 2 and a message naming the variable (with a suggestion for a "
        "misspelt name). `ner-worker settings` prints the value of every setting as the worker would use it, "
        "marking those the environment set. Secrets can also be given as `<NAME>_FILE`, the path of a file "
        "that holds the value (a mounted Kubernetes Secret), and are never printed or logged. The Helm chart's "
        "`config` values set the same variables (see helm/kafka-ner-worker/README.md).",
    ]
    section_of = sections()
    last_section = None
    for f in setting_fields():
        section = section_of.get(f.name, "")
        if section != last_section:
            out += ["", f"## {section}", "", "| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
            last_section = section
        name = f"`{env_name(f.name)}`" + (f" or `{env_name(f.name)}{FILE_SUFFIX}`" if f.metadata.get("secret") else "")
        doc = str(f.metadata.get("doc", "")).replace("|", "\\|")
        out.append(f"| {name} | {_kind(f, hints[f.name])} | {_default(f)} | {doc} |")
    return "\n".join(out) + "\n"


def _kind(f: Field[Any], hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in typing.get_args(hint))
    kind = {bool: "boolean", int: "integer", float: "number", Path: "file path", Secret: "secret",
            str: "string"}.get(hint, "comma-separated list")
    bounds = [f"≥ {f.metadata['min']}" if "min" in f.metadata else "",
              f"≤ {f.metadata['max']}" if "max" in f.metadata else ""]
    return " ".join([kind, *filter(None, bounds)])


def _default(f: Field[Any]) -> str:
    if f.name == "model" and f.default == str(TINY_NER_PATH):
        return SHIPPED_MODEL  # an absolute path that depends on where the package is installed
    shown = _shown(f.default)
    return f"`{shown}`" if shown else "(empty)"


def sections() -> dict[str, str]:
    """Field name -> the section comment (``# --- Kafka ---``) above it in settings.py."""
    current, found = "", {}
    for line in inspect.getsource(Settings).splitlines():
        header = re.match(r"\s*# --- (.+?) -+\s*$", line)
        if header:
            current = header.group(1)
            continue
        name = re.match(r"\s{4}(\w+): ", line)
        if name:
            found[name.group(1)] = current
    return found

"""Where the README and docs/ quote a setting's default, it is the default in worker/settings.py.

Three ways the docs quote one: a table with a "default" column whose row names `NER_X`;
"`NER_X` ... (default V)" on one line (the nearest setting before it); "`NER_X=V` (default)".
"""

from __future__ import annotations

import re
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import pytest

from worker.bundled_model import TINY_NER_PATH
from worker.settings import env_name, setting_fields

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SETTING = re.compile(r"`(NER_[A-Z0-9_]+)")
# Words the docs use for "empty: the engine/library decides".
MEANS_EMPTY = {"vllm's choice", "not set", "none", "empty", "(empty)"}
UNITS = {"kib": 1024, "mib": 1024**2, "gib": 1024**3}


def defaults() -> dict[str, Any]:
    found = {}
    for f in setting_fields():
        value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        found[env_name(f.name)] = value
    return found


def normalised(text: str) -> Any:
    """The value a doc writes, as the settings hold it: numbers, booleans, strings."""
    text = text.strip().strip("`").strip()
    text = re.split(r"\s+=\s+|\s+\(", text)[0].strip().strip("`")  # "auto = bfloat16", "0 (model's)"
    if text.lower() in MEANS_EMPTY:
        return ""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    number = re.fullmatch(r"([0-9][0-9,]*(?:\.[0-9]+)?)\s*([KMG]iB)?", text)
    if number:
        value = float(number.group(1).replace(",", ""))
        return value * UNITS[number.group(2).lower()] if number.group(2) else value
    return text


def same(documented: Any, actual: Any) -> bool:
    if actual is None:  # an optional setting: the docs write it as empty
        return documented == ""
    if actual == str(TINY_NER_PATH):  # a path of the installed package: the docs say it in words
        return "shipped" in str(documented)
    if isinstance(actual, bool) or isinstance(documented, bool):
        return documented is actual
    if isinstance(actual, int | float) and isinstance(documented, float):
        return float(actual) == documented
    if isinstance(actual, tuple):
        actual = ",".join(actual)
    return str(actual) == str(documented)


def quoted_defaults(path: Path) -> list[tuple[int, str, str]]:
    """(line number, NER_X, documented default) for every quote of a default in one file."""
    quotes: list[tuple[int, str, str]] = []
    default_column: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("|"):
            # A cell may hold an escaped pipe (`a` \| `b`, the choices of a setting): not a column.
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if any(c.lower() == "default" for c in cells):
                default_column = next(i for i, c in enumerate(cells) if c.lower() == "default")
                continue
            names = SETTING.findall(cells[0]) if cells else []
            if default_column is not None and len(names) == 1 and default_column < len(cells):
                quotes.append((number, names[0], cells[default_column]))
                continue
        else:
            default_column = None
        # Prose: a "(default V)" belongs to the nearest `NER_X` before it on the same line.
        for match in re.finditer(r"\(default:? (`[^`]+`|[^),;]+)\)", line):
            before = SETTING.findall(line[: match.start()])
            if before and not SETTING.search(match.group(1)):  # "(default: `NER_X`)" is an option's default
                quotes.append((number, before[-1], match.group(1)))
        for match in re.finditer(r"`([^`]+)` \(default\)", line):
            if match.group(1).startswith("NER_") and "=" in match.group(1):
                name, value = match.group(1).split("=", 1)
                quotes.append((number, name, value))
            elif before := SETTING.findall(line[: match.start()]):
                quotes.append((number, before[-1], match.group(1)))
    return quotes


def all_quotes() -> list[tuple[str, int, str, str]]:
    return [(p.relative_to(REPO).as_posix(), n, name, v) for p in DOCUMENTS for n, name, v in quoted_defaults(p)]


def test_the_docs_quote_defaults_at_all() -> None:
    """A control: the scan finds the quotes it is meant to check (the stream's batch size among them)."""
    quoted = {(name, normalised(value)) for _, _, name, value in all_quotes()}
    assert ("NER_MAX_BATCH_DOCUMENTS", 256.0) in quoted
    assert ("NER_ENGINE_REPLICAS", 4.0) in quoted
    assert len(quoted) >= 20


@pytest.mark.parametrize(("where", "line", "name", "value"), all_quotes(),
                         ids=[f"{w}:{n}:{name}" for w, n, name, _ in all_quotes()])
def test_a_documented_default_is_the_settings_default(where: str, line: int, name: str, value: str) -> None:
    known = defaults()
    assert name in known, f"{where}:{line}: {name} is not a setting"
    assert same(normalised(value), known[name]), (
        f"{where}:{line}: the docs say {name} defaults to {value!r}; worker/settings.py says {known[name]!r}"
    )


def test_the_checker_notices_a_wrong_default(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("The stream batches `NER_MAX_BATCH_DOCUMENTS` (default 64) documents.\n", encoding="utf-8")
    [(_, name, value)] = quoted_defaults(doc)
    assert not same(normalised(value), defaults()[name])

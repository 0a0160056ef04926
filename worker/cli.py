"""The ``ner-worker`` command: ``run`` the stream worker, ``annotate`` files, ``serve`` HTTP, and
list the ``settings``.

Each command is a package with a ``command`` module that has ``HELP``, ``configure(parser)`` and
``main(args, settings) -> int`` and keeps its heavy imports inside ``main``. The settings are
read here, once, for every command: bad settings exit 2 with a message naming the variable.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker import __version__
from worker.logs import configure_logging
from worker.settings import SettingsError, env_name, load_settings, setting_fields

COMMANDS: dict[str, str] = {
    "run": "worker.stream.command",
    "annotate": "worker.offline.command",
    "serve": "worker.serve.command",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ner-worker", description="Named entity recognition on Kafka streams.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("settings", help="list every NER_* setting with its default and meaning")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.configure(commands.add_parser(name, help=module.HELP, description=module.__doc__))
    args = parser.parse_args(argv)
    if args.command == "settings":
        _print_settings()
        return 0
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ner-worker {args.command}: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return int(importlib.import_module(COMMANDS[args.command]).main(args, settings))


def _print_settings() -> None:
    for field in setting_fields():
        default = field.default
        shown = ",".join(default) if isinstance(default, tuple) else ("" if default is None else default)
        print(f"{env_name(field.name)}={shown}\n    {field.metadata.get('doc', '')}")


if __name__ == "__main__":
    raise SystemExit(main())

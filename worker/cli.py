"""The ``ner-worker`` command: ``run`` the stream worker, list the ``settings``, and the commands
of other front ends (offline files, HTTP), each a module with ``configure(parser)`` and
``main(args) -> int`` that keeps its heavy imports inside ``main``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence

from worker import __version__
from worker.logs import configure_logging
from worker.settings import SettingsError, env_name, load_settings, setting_fields

log = logging.getLogger("worker")

# Sub-commands that live in their own modules: name -> module.
FRONT_ENDS: dict[str, str] = {"annotate": "worker.offline", "serve": "worker.serve"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ner-worker", description="Named entity recognition on Kafka streams.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume, annotate and publish until SIGTERM (settings from NER_* variables)")
    commands.add_parser("settings", help="list every NER_* setting with its default and meaning")
    for name, module_name in FRONT_ENDS.items():
        module = importlib.import_module(module_name)
        module.configure(commands.add_parser(name, help=module.HELP, description=module.__doc__))
    args = parser.parse_args(argv)
    if args.command == "settings":
        _print_settings()
        return 0
    if args.command in FRONT_ENDS:
        return int(importlib.import_module(FRONT_ENDS[args.command]).main(args))
    return _run()


def _run() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ner-worker: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_lines=settings.log_json)
    from worker.app import StartupError, run_worker  # heavy imports only once the settings are sound
    from worker.stream.runner import FatalStreamError

    try:
        asyncio.run(run_worker(settings))
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 3
    except FatalStreamError as exc:
        log.error("stopped without committing unfinished records: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _print_settings() -> None:
    for field in setting_fields():
        default = field.default
        shown = ",".join(default) if isinstance(default, tuple) else ("" if default is None else default)
        print(f"{env_name(field.name)}={shown}\n    {field.metadata.get('doc', '')}")


if __name__ == "__main__":
    raise SystemExit(main())

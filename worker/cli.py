"""The ``ner-worker`` command: ``run`` the stream worker, ``annotate`` files, ``serve`` HTTP, and
show the ``settings``.

Each command is a package with a ``command`` module that has ``HELP``, ``configure(parser)`` and
``main(args, settings) -> int`` and keeps its heavy imports inside ``main``. The settings are
read here, once, for every command (``settings`` included): bad settings exit 2 with a message
naming the variable.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker import __version__
from worker.logs import configure_logging
from worker.settings import SETTINGS_PAGE, Settings, SettingsError, load_settings

COMMANDS: dict[str, str] = {
    "run": "worker.stream.command",
    "annotate": "worker.offline.command",
    "serve": "worker.serve.command",
}

SETTINGS_HELP = "print every NER_* setting with the value the worker would use"
SETTINGS_DESCRIPTION = """\
Print every NER_* setting with the value the worker would use (defaults merged with the
environment, secrets masked) and its meaning; settings the environment set are marked.
The same checks as every other command run first, so a bad or unknown setting is reported
here exactly as `run` would report it.

Exit status: 0 when the settings are valid, 2 for a bad or unknown setting."""

EPILOG = (f"Settings: NER_* environment variables, listed in {SETTINGS_PAGE}; "
          "`ner-worker settings` prints the values in effect.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ner-worker", description="Named entity recognition on Kafka streams.",
                                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("settings", help=SETTINGS_HELP, description=SETTINGS_DESCRIPTION, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.add_argument("--markdown", action="store_true",
                         help=f"print the reference page of every setting and its default ({SETTINGS_PAGE})")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.configure(commands.add_parser(name, help=module.HELP, description=module.__doc__, epilog=EPILOG))
    args = parser.parse_args(argv)
    if args.command == "settings" and args.markdown:
        from worker.settings_page import markdown

        sys.stdout.write(markdown())
        return 0
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ner-worker {args.command}: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        return _print_settings(settings)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return int(importlib.import_module(COMMANDS[args.command]).main(args, settings))


def _print_settings(settings: Settings) -> int:
    from worker.settings_page import effective_listing

    sys.stdout.write(effective_listing(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

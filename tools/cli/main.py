"""The `ember` command: compile | check | run | bench | inspect | sign | doctor | demo.

User errors print one line `ember: error: ...` and exit with code 2; a failed verification
exits with 1; an unexpected error exits with 1 and shows its traceback with `--debug`.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from ember import __version__
from ember.tools.cli import signals


def _parser() -> argparse.ArgumentParser:
    from ember.tools.cli import bench, check, demo, doctor, inspect, run, sign
    from ember.tools.cli import compile as compile_command  # the module, not the builtin

    parser = argparse.ArgumentParser(
        prog="ember", description="Compile, verify and run compressed neural networks.")
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    # --debug after the subcommand too: SUPPRESS leaves the top-level value unless given
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (compile_command, check, run, bench, inspect, sign, doctor, demo):
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                                 parents=[debug])
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():  # not when embedded in a thread
        signals.install()
    try:
        return _run(argv)
    except KeyboardInterrupt:  # also while the parser and the commands' modules import
        print("ember: interrupted", file=sys.stderr)
        return 130


def _run(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad flags
    from ember.errors import UserError, VerificationError, first_line

    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"ember: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except VerificationError as exc:
        print(f"ember: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ember: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"ember: internal error: {type(exc).__name__}: {first_line(exc, 300)} (rerun "
              "with --debug for the traceback)", file=sys.stderr)
        return 1

"""The error kinds ember distinguishes, and the exit code each maps to.

A `UserError` is something the user can fix (bad config, missing file, wrong input, tampered
artifact): the CLI prints its one-line message and exits with code 2. A `VerificationError`
means the compiled artifact disagrees with the model it came from: exit code 1. Anything else
is an internal error (exit code 1, traceback with `--debug`).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave ember; the message is one line naming what and where."""

    exit_code = 2


class ConfigError(UserError):
    """The compile configuration (YAML or flags) is invalid."""


class ModelSpecError(UserError):
    """A model spec does not resolve to a loadable model."""


class UnsupportedModelError(UserError):
    """The model uses something a stage cannot handle (an operator, a dynamic shape, ...)."""


class ArtifactError(UserError):
    """An artifact directory is missing, incomplete, tampered with, or already exists."""


class InputError(UserError):
    """Inputs given to a session do not match the artifact's signature."""


class VerificationError(Exception):
    """The compiled artifact's outputs differ from the reference beyond the tolerance."""

    exit_code = 1


def first_line(exc: BaseException, limit: int = 200, last: bool = False) -> str:
    """One line of an exception's message for a one-line error (its type name when empty).

    `last=True` takes the final line instead: TVM puts the actual error at the end of a long
    report.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[-1] if last else lines[0])[:limit]

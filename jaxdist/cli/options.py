"""Argument parsing shared by the commands: one-line errors, checked numbers, did-you-mean.

Every user mistake is reported as one line ``error: ...`` on stderr with exit status 2
(:class:`Parser` for argparse's own errors, :class:`CLIError` for the commands' checks).
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from typing import Iterable, NoReturn

__all__ = ["CLIError", "Parser", "did_you_mean", "solver_by_name", "positive_int",
           "nonnegative_int", "positive_float", "nonnegative_float", "unit_interval", "int_list", "name_list"]

#: shown with argparse's "expected one argument" (``--lr -1e-3`` is read as an option)
NEGATIVE_HINT = "a value that starts with '-' is written with '=', e.g. --lr=-1e-3"


class CLIError(Exception):
    """A user mistake the command line reports as one line ``error: <message>``."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (or ``""``)."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def solver_by_name(name: str):
    """``jaxdist.solvers.registry.by_name(name)``, its error as a :class:`CLIError`."""
    from ..solvers.registry import by_name

    try:
        return by_name(name)
    except ValueError as err:
        raise CLIError(str(err)) from None


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line ``error: ...`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        if "expected one argument" in message:
            message += f" ({NEGATIVE_HINT})"
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


def _number(text: str, kind: type, what: str, ok) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, "a positive finite number", lambda v: v > 0)


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(text, float, "a finite number >= 0", lambda v: v >= 0)


def unit_interval(text: str) -> float:
    """A number in ``[0, 1)`` (EMA decays)."""
    return _number(text, float, "a number in [0, 1)", lambda v: 0 <= v < 1)


def int_list(text: str) -> list[int]:
    """Comma-separated positive integers, at least one."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}")
    return [positive_int(v) for v in items]


def name_list(text: str) -> list[str]:
    """Comma-separated names, at least one."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"must be comma-separated names, got {text!r}")
    return items

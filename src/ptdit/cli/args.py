"""Shared argparse pieces for the subcommands: a parser whose errors are one line, list flags whose repeats add
up, and value types that check numbers where they enter."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `ptdit CMD: error: ... (see ptdit CMD --help)`, exit status 2,
    without the usage block. (A single-valued flag given twice keeps the later value, as usual on command lines, so
    a later option overrides an earlier one; list flags add up, see AccumulateList.)"""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class AccumulateList(argparse.Action):
    """A `nargs="+"` list flag whose repeats add up: `--model A --model B` is `--model A B`.

    argparse's default `store` keeps only the last repeat, and `extend` would add to the default list; this
    replaces the default on first use and extends it afterwards.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:
            current = []
        setattr(namespace, self.dest, [*current, *(values or [])])


def _number(kind: type, text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def number(kind: type = float, *, minimum: float | None = None, positive: bool = False) -> Callable[[str], Any]:
    """An argparse `type` for a finite int or float, optionally > 0 (`positive`) or >= `minimum`."""

    def parse(text: str) -> Any:
        value = _number(kind, text)
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


finite_float = number(float)
positive_float = number(float, positive=True)
positive_int = number(int, positive=True)
nonnegative_int = number(int, minimum=0)


def ptdit_command() -> str:
    """How to run `ptdit` again from this shell: `ptdit` when it is on PATH, else the script's own path
    (e.g. `.venv/bin/ptdit` after `make demo` without activating the environment), else `python -m ptdit`."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    on_path = shutil.which("ptdit")
    if script is not None and script.name == "ptdit":
        if on_path and Path(on_path).resolve() == script.resolve():
            return "ptdit"
        try:
            return os.path.relpath(script)
        except ValueError:
            return str(script)
    if on_path and Path(on_path).parent == Path(sys.executable).parent:
        return "ptdit"
    return f"{sys.executable} -m ptdit"


__all__ = [
    "AccumulateList",
    "OneLineParser",
    "finite_float",
    "nonnegative_int",
    "number",
    "positive_float",
    "positive_int",
    "ptdit_command",
]

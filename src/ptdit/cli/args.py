"""Shared argparse pieces for the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


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


__all__ = ["AccumulateList"]

"""`ptdit` console script: subcommands registered from small modules, and the one error path.

Every user error (bad value, bad path, bad file, unavailable device, mismatched resume) prints one line
`ptdit CMD: error: <what> (<how to fix>)` and exits with status 2; an unexpected internal error prints one line
saying so, with the PTDIT_DEBUG=1 hint, and exits with status 1. Warnings print as one plain sentence, once.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ptdit.allocator import keep_freed_memory
from ptdit.cli import bench, cache, convert, data, demo, flops, models, sample, study, train
from ptdit.cli import eval as evaluate  # `eval` would shadow the builtin here
from ptdit.cli.args import OneLineParser

SUBCOMMANDS = (models, convert, demo, data, cache, train, sample, evaluate, flops, bench, study)
USER_ERRORS = (ValueError, ImportError, OSError, KeyError)
DEBUG_HINT = "set PTDIT_DEBUG=1 for the traceback"

# What to do about an OSError that carries only the system's message, by errno.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free some disk space or choose another location",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "check the permissions, or choose a location you can write to",
    errno.EPERM: "check the permissions, or choose a location you can write to",
    errno.EEXIST: "choose a path that does not exist yet",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "the path is a folder; give a file",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EDQUOT: "the disk quota is exhausted; free some space",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ptdit", description="PT-DiT: proxy-tokenized diffusion transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_user_error(err: BaseException) -> str:
    """The one-line message of a user error: its own text, or for a bare OSError the path, the system's reason
    and what to do."""
    if isinstance(err, KeyError) and err.args:
        return one_line(err.args[0])
    if isinstance(err, OSError) and err.strerror and err.errno is not None:
        where = f"{err.filename}: " if err.filename else ""
        fix = OS_ERROR_FIXES.get(err.errno, "check the path and try again")
        return one_line(f"{where}{err.strerror.lower()} ({fix})")
    return one_line(str(err)) or type(err).__name__


@contextmanager
def plain_warnings(command: str) -> Iterator[None]:
    """Shows each warning once, as `ptdit CMD: warning: <sentence>`, without the source line that raised it."""
    seen: set[str] = set()
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = one_line(str(message))
        if text not in seen:
            seen.add(text)
            print(f"ptdit {command}: warning: {text}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(os.environ.get("PTDIT_DEBUG"))
    with plain_warnings(args.command):
        try:
            keep_freed_memory()  # large CPU activations reuse warm pages: docs/decisions.md#cpu-allocator
            return int(args.func(args) or 0)
        except USER_ERRORS as err:
            if debug:
                raise
            print(f"ptdit {args.command}: error: {describe_user_error(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            kept = (
                " (the last complete checkpoint is intact; continue with --resume)" if args.command == "train" else ""
            )
            print(f"ptdit {args.command}: interrupted{kept}", file=sys.stderr)
            return 130
        except Exception as err:
            if debug:
                raise
            if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
                print(
                    f"ptdit {args.command}: error: out of memory on the device (lower the batch size, resolution or "
                    "frames, or use --dtype bf16 where the command has it)",
                    file=sys.stderr,
                )
                return 2
            first = one_line(str(err).strip().splitlines()[0] if str(err).strip() else "")
            print(
                f"ptdit {args.command}: internal error: {type(err).__name__}{': ' + first if first else ''} "
                f"(this is a bug in ptdit; {DEBUG_HINT} and report it)",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":
    sys.exit(main())

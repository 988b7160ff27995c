"""The one error path of the `ptdit` command (ptdit.cli.main): user errors are one line with exit status 2, internal
errors one line with exit status 1 and the PTDIT_DEBUG=1 hint, argparse errors one line, warnings one plain sentence
shown once."""

from __future__ import annotations

import errno
import os
import warnings

import pytest

from ptdit.cli import models
from ptdit.cli.main import main, plain_warnings


def _fail_with(monkeypatch, error: BaseException) -> None:
    def run(args):
        raise error

    monkeypatch.setattr(models, "run", run)


def test_internal_error_is_one_line_with_the_debug_hint(monkeypatch, capsys):
    _fail_with(monkeypatch, RuntimeError("boom\n  a wall of text\n  more"))
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ptdit models: internal error: RuntimeError: boom (this is a bug in ptdit; set PTDIT_DEBUG=1")


def test_debug_shows_the_traceback(monkeypatch):
    _fail_with(monkeypatch, ValueError("bad value"))
    monkeypatch.setenv("PTDIT_DEBUG", "1")
    with pytest.raises(ValueError, match="bad value"):
        main(["models"])


@pytest.mark.parametrize(
    ("code", "fix"),
    [(errno.ENOSPC, "free some disk space"), (errno.EROFS, "read-only"), (errno.EACCES, "permissions")],
)
def test_system_errors_name_the_path_and_the_fix(monkeypatch, capsys, code, fix):
    _fail_with(monkeypatch, OSError(code, os.strerror(code), "/data/run/metrics.jsonl"))
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ptdit models: error: /data/run/metrics.jsonl: ") and fix in err and "[Errno" not in err
    assert err.count("\n") == 1


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--steps", "x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert err.startswith("ptdit sample: error: argument --steps: invalid int value: 'x' (see ptdit sample --help)")


def test_warnings_are_one_plain_sentence_shown_once(capsys):
    with plain_warnings("sample"):
        for _ in range(3):
            warnings.warn("something is off,\n   spread over lines", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "ptdit sample: warning: something is off, spread over lines\n"
    assert warnings.showwarning is not None  # restored afterwards

"""ptdit.allocator: glibc keeps freed large blocks, so reallocating them costs no page faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ptdit.allocator import ENV_VAR, glibc, keep_freed_memory

GLIBC = glibc() is not None

# Allocates and frees a 64 MiB tensor (above glibc's largest default mmap threshold, 32 MiB) ten times after
# two warm-ups (the heap settles on the second) and prints the minor page faults of those ten, in a fresh
# process so the settings of this one do not matter.
PROBE = """
import json, resource, sys
import torch
from ptdit.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(2):
    torch.ones(16 * 2**20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 * 2**20).sum()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(mode: str, env: dict[str, str] | None = None) -> dict:
    import os

    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_kept_blocks_are_reused_without_page_faults():
    default, kept = probe("default"), probe("keep")
    assert kept["applied"] and not default["applied"]
    # 64 MiB is 16384 pages of 4 KiB (32 with transparent huge pages): the default maps and faults them in on
    # every allocation; kept, the pages are faulted in once, before the counted allocations.
    assert default["faults"] >= 10 * 32
    assert kept["faults"] < default["faults"] / 10


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_system_setting_leaves_glibc_defaults():
    system = probe("keep", {ENV_VAR: "system"})
    assert not system["applied"]
    assert system["faults"] >= 10 * 32


def test_unknown_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "jemalloc")
    with pytest.raises(ValueError, match=f"{ENV_VAR}='jemalloc' is not one of keep, system"):
        keep_freed_memory()


def test_cli_reports_an_unknown_setting_in_one_line(monkeypatch, capsys):
    from ptdit.cli.main import main

    monkeypatch.setenv(ENV_VAR, "jemalloc")
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ptdit models: error: PTDIT_CPU_ALLOCATOR='jemalloc'")


def test_held_bytes_must_fit_a_c_int():
    with pytest.raises(ValueError, match="held_bytes"):
        keep_freed_memory(2**31)

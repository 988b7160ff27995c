"""scripts/gpu-checks.sh: every ptdit command in it parses (the script can only run on a GPU machine, where a
wrong flag would waste the session's few device minutes)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from ptdit.cli.main import build_parser

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-checks.sh"
MODELS = ["PT-DiT/XL", "DiT-XL/2", "PixArt-alpha-XL/2", "diffusers:PixArtTransformer2DModel"]


def script_commands() -> list[list[str]]:
    """The argument lists of the script's `run NAME LIMIT ARGS...` lines, continuation lines joined."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if re.match(r"run \S+ \d+ ", line):
            words = shlex.split(line)[3:]
            commands.append([m for w in words for m in (MODELS if w == "$models" else [w])] + ["--json"])
    return commands


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_command_parses_and_targets_cuda():
    commands = script_commands()
    assert len(commands) >= 5
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.command == "bench" and args.device == "cuda", argv

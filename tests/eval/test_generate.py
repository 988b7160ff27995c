"""`ptdit eval generate` (ptdit.eval.generate): files, protocol record, npz, rank-count independence (torchrun),
resume, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptdit.cli.main import main
from ptdit.eval import generate as generate_module
from ptdit.eval.generate import read_sample

PROMPTS = [
    "a small red circle at the top left",
    "a large blue square at the center",
    "a small green triangle at the bottom right and a large white circle at the top left",
]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n")
    return path


def _args(checkpoint: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "generate", "--checkpoint", str(checkpoint), "--prompts", str(prompts), "--per-prompt", "3",
            "--batch-size", "4", "--seed", "5", "--out", str(out), *extra]  # fmt: skip


def _files(out: Path) -> dict[str, bytes]:
    """Every output file's bytes, generation.json without its run-specific fields."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    record = json.loads(files.pop("generation.json"))
    for key in ("num_ranks", "seconds"):
        record.pop(key)
    return {**files, "generation.json": json.dumps(record).encode()}


@pytest.fixture(scope="module")
def reference(t2i_checkpoint, prompts_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "one"
    assert main(_args(t2i_checkpoint, prompts_file, out)) == 0
    return out


def test_generate_writes_samples_npz_index_and_protocol(reference, t2i_checkpoint):
    record = json.loads((reference / "generation.json").read_text())
    assert record["complete"] and record["num_samples"] == 9 and record["num_ranks"] == 1
    assert record["checkpoint"] == str(t2i_checkpoint.resolve()) and record["weights"] == "ema.safetensors"
    assert {"sampler", "steps", "cfg_scale", "seed", "dtype", "height", "width"} <= set(record)
    assert record["source"]["per_prompt"] == 3 and len(record["source"]["prompts_sha256"]) == 64
    index = [json.loads(line) for line in (reference / "samples.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in index] == list(range(5, 14)) and index[4]["prompt"] == PROMPTS[1]
    arr = np.load(reference / "samples.npz")["arr_0"]
    assert arr.shape == (9, 32, 32, 3) and arr.dtype == np.uint8
    for i in range(9):
        assert np.array_equal(arr[i], read_sample(reference / f"samples/{i:06d}.png", 1)[0])
    assert not list(reference.rglob(".*")), "no temporary files left"


def test_two_ranks_equal_one_rank_byte_for_byte(reference, t2i_checkpoint, prompts_file, tmp_path):
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ptdit",
           *_args(t2i_checkpoint, prompts_file, out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "generation.json").read_text())["num_ranks"] == 2
    assert _files(out) == _files(reference)


def test_resumed_generation_equals_uninterrupted(reference, t2i_checkpoint, prompts_file, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    write_batch, calls = generate_module._write_batch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write_batch(*args, **kwargs)

    monkeypatch.setattr(generate_module, "_write_batch", interrupted)
    assert main(_args(t2i_checkpoint, prompts_file, out)) == 130
    assert not json.loads((out / "generation.json").read_text())["complete"]
    assert len(list((out / "samples").glob("*.png"))) == 4 and not (out / "samples.npz").exists()
    monkeypatch.setattr(generate_module, "_write_batch", write_batch)
    assert main(_args(t2i_checkpoint, prompts_file, out)) == 0
    assert _files(out) == _files(reference)


def test_video_samples_are_mp4_plus_lossless_frames_and_resume(t2v_checkpoint, tmp_path):
    prompts = tmp_path / "clips.txt"
    prompts.write_text("a red circle moving left\na blue square moving up\n")
    args = ["eval", "generate", "--checkpoint", str(t2v_checkpoint), "--prompts", str(prompts), "--batch-size", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == [
        "000000.mp4", "000000.png", "000001.mp4", "000001.png",
    ]  # fmt: skip
    assert read_sample(tmp_path / "a" / "samples" / "000001.png", 4).shape == (4, 32, 32, 3)
    assert json.loads((tmp_path / "a" / "generation.json").read_text())["files"]["npz"] is None
    (tmp_path / "a" / "samples" / "000001.mp4").unlink()  # an interrupted clip: its PNG is written last
    (tmp_path / "a" / "samples" / "000001.png").unlink()
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def _fails_cleanly(capsys, args: list[str], message: str, out: Path | None = None) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    if out is not None:
        assert not out.exists(), "nothing written"


def test_bad_input_one_line_exit_2_nothing_written(t2i_checkpoint, prompts_file, tmp_path, capsys):
    out = tmp_path / "out"
    _fails_cleanly(capsys, _args(tmp_path / "missing", prompts_file, out), "not found", out)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    _fails_cleanly(capsys, _args(t2i_checkpoint, empty, out), "holds no prompts", out)
    _fails_cleanly(capsys, _args(t2i_checkpoint, tmp_path / "nope.txt", out), "not found", out)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    _fails_cleanly(capsys, _args(t2i_checkpoint, binary, out), "cannot read prompts file", out)
    args = ["eval", "generate", "--checkpoint", str(t2i_checkpoint), "--classes", "3", "--out", str(out)]
    _fails_cleanly(capsys, args, "give --prompts FILE", out)
    _fails_cleanly(capsys, [*_args(t2i_checkpoint, prompts_file, out), "--height", "31"], "nearest valid", out)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    _fails_cleanly(capsys, _args(t2i_checkpoint, prompts_file, busy), "not a generation folder")
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_resume_with_other_settings_is_refused(reference, t2i_checkpoint, prompts_file, capsys):
    before = _files(reference)
    _fails_cleanly(capsys, [*_args(t2i_checkpoint, prompts_file, reference), "--steps", "1"], "other settings (steps")
    assert _files(reference) == before

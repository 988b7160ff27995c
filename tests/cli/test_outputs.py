"""Nothing is overwritten or lost, and what a newcomer stumbles on: sample numbering continues in an existing folder,
`--overwrite` replaces, folders written atomically keep unrelated content, `flops --plot DIR` writes inside DIR, the
bench table and progress in logs, the command to run again, and prompts the word encoder cannot read."""

from __future__ import annotations

import json
import sys
import warnings

import pytest

import ptdit
from ptdit.cli.args import ptdit_command
from ptdit.cli.bench import print_table
from ptdit.cli.main import main
from ptdit.io import atomic_directory
from ptdit.train.loop import train
from tests.helpers.train import tiny_train_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    return train(tiny_train_config("train.max_steps=1"), run, show_progress=False).checkpoint


def test_sampling_into_an_existing_folder_keeps_earlier_samples(checkpoint, tmp_path, capsys):
    out = tmp_path / "samples"
    args = ["sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle", "--out", str(out)]
    assert main(args) == 0
    first = (out / "000-a-red-circle.png").read_bytes()
    assert main([*args[:-2], "--prompt", "a blue square", "--out", str(out)]) == 0
    assert "grid-001.png" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "000-a-red-circle.json",
        "000-a-red-circle.png",
        "001-a-red-circle.json",
        "001-a-red-circle.png",
        "002-a-blue-square.json",
        "002-a-blue-square.png",
        "grid-001.png",
        "grid.png",
    ]
    assert (out / "000-a-red-circle.png").read_bytes() == first
    assert main([*args, "--overwrite"]) == 0  # numbering starts again at 000 and replaces
    assert json.loads((out / "000-a-red-circle.json").read_text())["prompt"] == "a red circle"
    assert len(list(out.iterdir())) == 8


def test_atomic_folders_keep_unrelated_content(tmp_path):
    target = tmp_path / "target"
    (target / "src").mkdir(parents=True)
    (target / "src" / "code.py").write_text("print('mine')\n")
    (target / "notes.txt").write_text("keep\n")
    (target / "weights.bin").write_text("old\n")
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("new\n")
    assert (target / "weights.bin").read_text() == "new\n"
    assert (target / "notes.txt").read_text() == "keep\n" and (target / "src" / "code.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_save_model_refuses_foreign_folders_and_keeps_extra_files(tmp_path):
    model = ptdit.build_model("PT-DiT/Tiny")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "train.py").write_text("important\n")
    with pytest.raises(FileExistsError, match="not a ptdit checkpoint"):
        ptdit.save_model(model, tmp_path / "project")
    assert (tmp_path / "project" / "train.py").read_text() == "important\n"
    ptdit.save_model(model, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "README.md").write_text("about this checkpoint\n")
    ptdit.save_model(model, tmp_path / "ckpt")  # replacing a checkpoint keeps what else is in its folder
    assert (tmp_path / "ckpt" / "README.md").is_file()


def test_convert_official_overwrite(tmp_path, fixtures_dir, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    reference = fixtures_dir / "ptdit_official_image.safetensors"
    with safe_open(str(reference), "pt") as f:
        metadata = f.metadata()
    params = {k.removeprefix("param."): v for k, v in load_file(str(reference)).items() if k.startswith("param.")}
    save_file(params, str(tmp_path / "weights.safetensors"), metadata=metadata)
    args = ["convert-official", "--weights", str(tmp_path / "weights.safetensors")]
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    assert main([*args, "--out", str(tmp_path / "c")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "c"), "--overwrite"]) == 0


def test_flops_plot_into_a_folder(tmp_path, capsys):
    args = ["flops", "--model", "PT-DiT/Tiny", "--resolution", "256", "--no-verify", "--plot", str(tmp_path)]
    assert main(args) == 0 and main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flops-1.png", "flops.png"]
    assert f"wrote {tmp_path / 'flops-1.png'}" in capsys.readouterr().out


def test_bench_table_columns_and_progress_in_logs(capsys):
    row = {
        "resolution": 512, "tokens": 1024, "model": "PT-DiT/B", "depth": 12, "width": 640, "forward_ms": 1.0,
        "train_step_ms": None, "peak_memory_mb": None, "gmac": 1.0, "forward_gflops_per_s": 1.0,
        "forward_time_ratio": 1.0, "flop_ratio": 1.0, "forward_realised_speedup": 1.0, "train_realised_speedup": None,
        "device": "cpu", "dtype": "fp32", "threads": 1, "batch": 1, "text_tokens": 8, "repeats": 1,
    }  # fmt: skip
    print_table([row])
    lines = capsys.readouterr().out.splitlines()
    header, values = lines[1].split(), lines[3].split()
    assert values[header.index("D")] == "12" and values[header.index("W")] == "640"
    tiny = ["--depth", "1", "--width", "64", "--heads", "4", "--repeats", "1", "--warmup", "0", "--forward-only"]
    assert main(["bench", "--model", "PT-DiT/Tiny", "DiT-S/2", "--resolution", "64", *tiny, "--json"]) == 0
    err = capsys.readouterr().err  # captured: not a terminal, so one plain line per run
    assert "bench 1/2: PT-DiT/Tiny at 64 px" in err and "bench 2/2: DiT-S/2 at 64 px" in err


def test_the_command_to_run_again(monkeypatch, tmp_path):
    script = tmp_path / ".venv" / "bin" / "ptdit"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert ptdit_command() == ".venv/bin/ptdit"  # not on PATH after `make demo`: the path that works
    monkeypatch.setenv("PATH", str(script.parent))
    assert ptdit_command() == "ptdit"


def test_word_encoder_reads_any_script_and_names_what_it_ignores():
    from ptdit.encoders.words import WordTextEncoder

    encoder = WordTextEncoder(["a", "red", "café", "circle"], dim=8, max_length=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, _ = encoder.tokenize(["a red café circle 🙂!"])
    assert ids[0, :5].tolist() == [encoder.tokens[w] for w in ("a", "red", "café", "circle", "</s>")]
    assert [str(w.message) for w in caught] == [
        "the word encoder reads only letters and digits; ignored these characters: 🙂"
    ]
    with pytest.warns(UserWarning, match="not in the vocabulary"):  # ASCII captions split exactly as before
        plain, _ = encoder.tokenize(["a red circle, at the centre."])
    assert plain[0, :3].tolist() == [encoder.tokens[w] for w in ("a", "red", "circle")]


def test_no_file_is_left_when_sampling_fails_late(checkpoint, tmp_path, monkeypatch):
    import ptdit.cli.sample as sample

    def fail(*args, **kwargs):
        raise ValueError("sampling failed")

    monkeypatch.setattr(sample, "sample_in_stages", fail)
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(checkpoint), "--prompt", "x", "--out", str(out)]) == 2
    assert not out.exists()

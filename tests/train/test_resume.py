"""Resume tells the truth (ptdit.train.resume, docs/training.md#resuming-with-another-config): changed settings need
--allow-config-change and are recorded; the step resumed from is named; a run with nothing left to train says so;
leftovers of killed saves are removed; a failed run leaves nothing behind; the time budget names itself."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ptdit.cli.main import main
from ptdit.train.loop import train
from ptdit.train.resume import config_changes
from tests.helpers.train import tiny_train_config, write_tiny_config


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_changed_settings_need_the_flag_and_are_recorded(tmp_path, capsys):
    train(tiny_train_config("train.max_steps=4"), tmp_path / "run", stop_at=2, show_progress=False)
    changed = tiny_train_config("train.max_steps=4", "optim.lr=2e-3", "train.log_every=2")
    with pytest.raises(ValueError, match=r"optim.lr: 0.001 -> 0.002\); pass --allow-config-change"):
        train(changed, tmp_path / "run", resume=True, show_progress=False)
    with pytest.warns(UserWarning, match="no longer bit-exact"):
        result = train(changed, tmp_path / "run", resume=True, allow_config_change=True, show_progress=False)
    assert result.steps == 4
    err = capsys.readouterr().err
    assert "resuming from" in err and "(step 2)" in err
    events = [r for r in _records(tmp_path / "run") if r.get("event") == "config_change"]
    assert events == [{"step": 2, "event": "config_change", "changes": {"optim.lr": [0.001, 0.002]}}]


def test_settings_that_never_change_the_numbers_are_free():
    saved = {"model": tiny_train_config().model_config().to_dict(), "train": tiny_train_config().to_dict()}
    free = tiny_train_config("train.log_every=7", "train.max_minutes=3", "pipeline.steps=9", "data.num_workers=1")
    assert config_changes(saved, free) == ({}, {})


def test_resume_names_the_step_and_a_finished_run_says_there_is_nothing_to_train(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "tiny.json", "train.max_steps=2")
    args = ["train", "--config", str(config), "--out", str(tmp_path / "run")]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr()
    assert "resuming from" in out.err and "step-0000002 (step 2)" in out.err
    assert "nothing to train: the run is already at step 2" in out.out and "nan" not in out.out


def test_resumed_run_without_steps_reports_the_last_loss(tmp_path):
    first = train(tiny_train_config("train.max_steps=2"), tmp_path / "run", show_progress=False)
    again = train(tiny_train_config("train.max_steps=2"), tmp_path / "run", resume=True, show_progress=False)
    assert again.steps == again.start_step == 2 and again.final_loss == _records(tmp_path / "run")[-1]["loss"]
    assert first.checkpoint == again.checkpoint


def test_leftovers_of_a_killed_save_are_removed(tmp_path, capsys):
    train(tiny_train_config("train.max_steps=2"), tmp_path / "run", stop_at=1, show_progress=False)
    (tmp_path / "run" / "checkpoints" / ".step-0000002.tmp-abc").mkdir()
    (tmp_path / "run" / "checkpoints" / ".step-0000001.old-123").mkdir()
    train(tiny_train_config("train.max_steps=2"), tmp_path / "run", resume=True, show_progress=False)
    assert "removed 2 incomplete checkpoint(s)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "latest",
        "step-0000001",
        "step-0000002",
    ]


def test_a_failed_run_leaves_no_folder_and_no_text_encoder(tmp_path, monkeypatch):
    import ptdit.train.loop as loop

    def broken(*args, **kwargs):
        raise ValueError("the data went away")

    monkeypatch.setattr(loop, "build_loader", broken)
    with pytest.raises(ValueError, match="data went away"):
        train(tiny_train_config("train.max_steps=2"), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError, match="data went away"):
        train(tiny_train_config("train.max_steps=2"), tmp_path / "kept", show_progress=False)
    assert not (tmp_path / "kept" / "text_encoder").exists()


def test_time_budget_stopping_a_max_steps_run_says_so(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "tiny.json", "train.max_steps=50", "train.max_minutes=0.000001")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--max-steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "stopped at step 1 of 40: the time budget train.max_minutes=1e-06 was reached" in out
    assert "--resume" in out


def test_only_rank_zero_prints_the_summary(monkeypatch, capsys, tmp_path):
    import ptdit.train.loop as loop

    result = SimpleNamespace(steps=2, start_step=0, stop_step=2, samples_seen=8, train_seconds=1.0, final_loss=0.5,
                             checkpoint=tmp_path / "c", stopped_by=None)  # fmt: skip
    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: result)
    config = write_tiny_config(tmp_path / "tiny.json")
    args = ["train", "--config", str(config), "--out", str(tmp_path / "run")]
    monkeypatch.setenv("RANK", "1")
    assert main(args) == 0 and capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 0 and "trained to step 2" in capsys.readouterr().out


def test_fields_of_another_ptdit_version_are_not_changes():
    saved = {"model": tiny_train_config().model_config().to_dict(), "train": tiny_train_config().to_dict()}
    saved["model"]["a_field_from_an_older_version"] = 1
    del saved["train"]["optim"]["min_lr_ratio"]  # a field this version added
    assert config_changes(saved, tiny_train_config()) == ({}, {})
    assert config_changes(saved, tiny_train_config("data.options.min_objects=1"))[1] == {
        "data.options.min_objects": (None, 1)
    }

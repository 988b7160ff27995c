"""Evaluation during training (ptdit.eval.during_training) and `ptdit eval oracle` / `shapes-fd` on a checkpoint:
metrics.jsonl records, stratified prompt subsets, and in-memory scores equal to the command's."""

from __future__ import annotations

import json

import pytest

from ptdit.cli.main import main
from ptdit.eval.during_training import suite_subset
from ptdit.eval.suites import load_suite
from tests.helpers.train import tiny_train_config


def test_suite_subset_is_stratified():
    suite = load_suite("t2i-v1")
    items = suite_subset(suite, 14)
    assert len(items) == 14 and {i["category"] for i in items} == set(suite["categories"])
    assert suite_subset(suite, 0) == suite["items"] and len(suite_subset(suite, 15)) == 21


def test_train_logs_benchmark_and_shapes_fd_every_n_steps(tmp_path):
    from ptdit.eval.during_training import make_training_evaluator
    from ptdit.train.loop import train

    cfg = tiny_train_config(
        "train.max_steps=4", "data.size=32", "pipeline.text_max_length=40", "train.eval_every=2",
        "train.eval_prompts=7", "train.eval_fd_samples=16",
    )  # fmt: skip
    train(cfg, tmp_path / "run", show_progress=False, evaluate=make_training_evaluator(cfg))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/oracle_overall" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert {"eval/oracle/counting", "eval/shapes_fd", "eval/shapes_fd_floor", "eval/seconds"} <= set(evals[0])
    assert all(0 <= r["eval/oracle_overall"] <= 1 and r["eval/shapes_fd"] >= 0 for r in evals)
    assert len([r for r in records if "loss" in r]) == 4  # training records are unchanged


def test_train_refuses_evaluation_it_cannot_do(tmp_path):
    from ptdit.eval.during_training import make_training_evaluator

    cfg = tiny_train_config("train.eval_every=2", data={"dataset": "turntable", "size": 32, "options": {"views": 2}})
    with pytest.raises(ValueError, match="written for the 'shapes' dataset"):
        make_training_evaluator(cfg)
    with pytest.raises(ValueError, match="eval_fd_samples"):
        tiny_train_config("train.eval_fd_samples=1")


def test_oracle_command_writes_records_and_matches_in_memory_evaluation(t2i_checkpoint, tmp_path, capsys):
    from ptdit.eval.during_training import evaluate_pipeline
    from ptdit.sampling.pipeline import GenerationPipeline

    out = tmp_path / "oracle"
    assert main(["eval", "oracle", "--checkpoint", str(t2i_checkpoint), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| **overall** |" in table and "| color_binding |" in table
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert summary["suite"] == "t2i-v1" and summary["num_samples"] == len(records) == 224
    assert summary["generation"]["seeds"] == 1 and (out / "generation.json").is_file()
    first = records[0]
    assert {"id", "category", "prompt", "seed", "file", "passed", "checks", "found"} <= set(first)
    assert all({"name", "tag", "passed", "scored", "why"} == set(c) for r in records for c in r["checks"])
    # The same weights evaluated in memory (as during training) give the same verdicts.
    result = evaluate_pipeline(
        GenerationPipeline.from_checkpoint(t2i_checkpoint), suite=load_suite("t2i-v1"), options={}, fd_samples=0
    )
    assert [r["passed"] for r in result["records"]] == [r["passed"] for r in records]
    assert result["summary"]["categories"] == summary["categories"]
    # A second run resumes: nothing to generate, same summary.
    assert main(["eval", "oracle", "--checkpoint", str(t2i_checkpoint), "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["overall"] == summary["overall"]


def test_shapes_fd_command_on_a_checkpoint(t2i_checkpoint, tmp_path, capsys):
    out = tmp_path / "fd"
    args = ["eval", "shapes-fd", "--checkpoint", str(t2i_checkpoint), "--num-samples", "40", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_fake"] == 40 and result["dataset"] == "shapes" and result["shapes_fd"] > result["real_floor"]
    assert json.loads((out / "shapes_fd.json").read_text())["shapes_fd"] == result["shapes_fd"]
    assert result["options"] == {"size": 32, "max_objects": 1}  # the checkpoint's training data
    # The folder route reads the same samples back.
    assert main(["eval", "shapes-fd", "--fake", str(out), "--num-samples", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shapes_fd"] == result["shapes_fd"]


def test_oracle_command_on_a_video_checkpoint_with_a_suite_file(t2v_checkpoint, tmp_path, capsys):
    suite = load_suite("t2v-v1")
    items = [next(i for i in suite["items"] if i["category"] == c) for c in ("motion_direction", "motion_binding")]
    small = tmp_path / "small-suite.json"
    small.write_text(json.dumps({**suite, "name": "t2v-small", "items": items}))
    out = tmp_path / "oracle-t2v"
    args = ["eval", "oracle", "--checkpoint", str(t2v_checkpoint), "--suite", str(small), "--seeds", "2"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["suite"] == "t2v-small" and set(summary["categories"]) == {"motion_direction", "motion_binding"}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["repeat"], r["seed"]) for r in records] == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert len(records[1]["found"]) == 2  # one reading per mover, from the frames read back from the PNG
    assert (out / "samples" / "000003.mp4").is_file()

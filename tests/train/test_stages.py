"""Multi-stage runs (ptdit.train.stages, docs/training.md#stages): transitions at the stage boundaries, state carried
over exactly, exact resume inside a stage, stages named in the metrics, validation; the shipped staged recipes;
`train.init_from`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ptdit.io import load_safetensors
from ptdit.models.registry import build_model
from ptdit.recipe.windows import resolve_window
from ptdit.train.config import load_train_config, train_config_from_dict
from ptdit.train.loop import train
from ptdit.train.stages import resolve_stages
from ptdit.train.warmstart import load_initial_weights
from tests.helpers.train import tiny_train_config, tiny_train_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Three tiny pixel-space stages: size, window, batch and learning rate change at each boundary.
STAGES = [
    {"name": "s24", "steps": 2, "data.size": 24, "model.window_size": [1, 2, 2], "train.batch_size": 4},
    {"name": "s32", "steps": 2, "data.size": 32, "model.window_size": [1, 4, 4], "train.batch_size": 2},
    {"name": "s48", "steps": 2, "data.size": 48, "model.window_size": [1, 4, 4], "train.batch_size": 2},
]
for _stage, _lr in zip(STAGES, (1e-3, 5e-4, 2e-4), strict=True):
    _stage["optim.lr"] = _lr
FILES = ("model.safetensors", "ema.safetensors", "training_state/optimizer.safetensors")


def staged(stages=STAGES, *overrides: str):
    data = tiny_train_dict(*overrides)
    data["train"].pop("max_steps")  # the stages' total
    return train_config_from_dict({**data, "stages": stages})


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_files(a: Path, b: Path) -> None:
    for name in FILES:
        x, y = load_safetensors(a / name), load_safetensors(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def test_stages_switch_at_their_boundaries_and_are_named_in_the_metrics(tmp_path):
    result = train(staged(), tmp_path / "run", show_progress=False)
    assert result.steps == 6
    records = _records(tmp_path / "run")
    assert [(r["step"], r["stage"], r["lr"]) for r in records if "loss" in r] == [
        (1, "s24", 5e-4),
        (2, "s24", 1e-3),
        (3, "s32", 5e-4),
        (4, "s32", 5e-4),
        (5, "s48", 2e-4),
        (6, "s48", 2e-4),
    ]  # fmt: skip (warmup_steps=2 halves the first lr)
    events = [(r["step"], r["stage"]) for r in records if r.get("event") == "stage"]
    assert events == [(0, "s24"), (2, "s32"), (4, "s48")]
    for step, size, window in ((2, 24, [1, 2, 2]), (4, 32, [1, 4, 4]), (6, 48, [1, 4, 4])):
        config = json.loads((tmp_path / "run" / "checkpoints" / f"step-{step:07d}" / "config.json").read_text())
        assert config["train"]["data"]["size"] == config["pipeline"]["height"] == size
        assert config["model"]["window_size"] == window and config["train"]["stage"] == step // 2 - 1
    optimizer = load_safetensors(result.checkpoint / "training_state/optimizer.safetensors")
    assert {float(v) for k, v in optimizer.items() if k.endswith("/step")} == {6.0}  # Adam's count continued


def test_stage_transitions_carry_model_ema_and_optimizer_exactly(tmp_path):
    """Three stages that change nothing equal one unstaged run bit for bit: the boundaries lose no state."""
    same = [{"name": f"part-{i}", "steps": 2} for i in range(3)]
    plain = train(tiny_train_config("train.max_steps=6"), tmp_path / "plain", show_progress=False)
    parts = train(staged(same), tmp_path / "parts", show_progress=False)
    _same_files(plain.checkpoint, parts.checkpoint)
    losses = [[r["loss"] for r in _records(tmp_path / n) if "loss" in r] for n in ("plain", "parts")]
    assert losses[0] == losses[1]


def test_resume_inside_stage_two_is_exact(tmp_path):
    straight = train(staged(), tmp_path / "straight", show_progress=False)
    first = train(staged(), tmp_path / "resumed", stop_at=3, show_progress=False)
    assert first.steps == 3
    resumed = train(staged(), tmp_path / "resumed", resume=True, show_progress=False)
    assert resumed.steps == 6 and resumed.start_step == 3
    _same_files(straight.checkpoint, resumed.checkpoint)
    rows = [[(r["step"], r["stage"], r["loss"]) for r in _records(tmp_path / n) if "loss" in r]
            for n in ("straight", "resumed")]  # fmt: skip
    assert rows[0] == rows[1]


def test_stage_plans_are_validated_naming_the_problem():
    with pytest.raises(ValueError, match=r"stages\[0\] has unknown keys \['data.sise'\]"):
        staged([{"steps": 2, "data.sise": 32}])
    with pytest.raises(ValueError, match=r"stages\[1\].steps must be a positive integer"):
        staged([{"steps": 2}, {"steps": 0}])
    with pytest.raises(ValueError, match=r"train.max_steps=5 differs from the stages' total of 6"):
        train_config_from_dict({**tiny_train_dict("train.max_steps=5"), "stages": STAGES})
    with pytest.raises(ValueError, match=r"stages\[1\] \(s32\): .*train.batch_size"):
        staged([STAGES[0], {**STAGES[1], "train.batch_size": 0}])


@pytest.mark.parametrize(("name", "task", "latent_frames"), [("t2i-stages", "t2i", 1), ("t2v-stages", "t2v", 24)])
def test_shipped_staged_recipes_follow_table_3_and_the_window_rule(name, task, latent_frames):
    cfg = load_train_config(CONFIGS / f"{name}.yaml")
    stages = resolve_stages(cfg)
    table = {
        "t2i-stages": [(256, 10240, 100_000), (512, 768, 50_000), (1024, 512, 50_000)],
        "t2v-stages": [(256, 512, 100_000), (512, 256, 50_000)],
    }[name]
    assert [(s.config.data.size, s.config.train.batch_size, s.stop - s.start) for s in stages] == table
    assert cfg.train.max_steps == sum(steps for *_, steps in table)
    for s in stages:
        model = s.config.model_config()
        latent = (4, latent_frames, s.config.data.size // 8, s.config.data.size // 8)
        assert model.window_size == resolve_window(latent, model_config=model, task=task)  # 8 x 8 windows per frame
        assert s.config.optim.lr == 2e-5
    assert (cfg.train.init_from is not None) == (task == "t2v")  # T2V starts from the T2I stage-1 weights


def test_the_t2i_staged_recipe_runs_tiny(tmp_path):
    """The shipped file with tiny encoders and tiny stages (sizes and steps replaced, keys kept)."""
    from PIL import Image

    from tests.helpers.tiny_encoders import TINY_T5_DIM, make_tiny_t5, make_tiny_vae

    (tmp_path / "img").mkdir()
    for i in range(2):
        Image.new("RGB", (20, 20), (60 * i, 90, 30)).save(tmp_path / "img" / f"{i}.png")
        (tmp_path / "img" / f"{i}.txt").write_text(f"picture {i}")
    data = yaml.safe_load((CONFIGS / "t2i-stages.yaml").read_text())
    data["model"].update(dim=32, depth=1, num_heads=2)
    data["pipeline"].update(text_encoder=str(make_tiny_t5(tmp_path / "t5")), vae=str(make_tiny_vae(tmp_path / "vae")))
    data["model"]["context_dim"] = TINY_T5_DIM
    data["data"].update(num_workers=0, options={"root": str(tmp_path / "img")})
    data["train"].update(device="cpu", precision="fp32", grad_checkpointing=False, sample_every=0)
    for stage, size in zip(data["stages"], (16, 32, 64), strict=True):
        stage.update({"steps": 1, "data.size": size, "train.batch_size": 2, "data.options": {}})
    result = train(train_config_from_dict(data), tmp_path / "run", show_progress=False)
    assert result.steps == 3 and [r["stage"] for r in _records(tmp_path / "run") if "loss" in r] == [
        "256px", "512px", "1024px",
    ]  # fmt: skip


def test_init_from_starts_from_another_runs_ema_weights(tmp_path):
    source = train(tiny_train_config("train.max_steps=2"), tmp_path / "t2i", show_progress=False)
    module = build_model(tiny_train_config().model_config())
    assert load_initial_weights(module, tmp_path / "t2i").name == "ema.safetensors"
    ema = load_safetensors(source.checkpoint / "ema.safetensors")
    assert all(torch.equal(v, ema[k]) for k, v in module.state_dict().items())
    run = train(tiny_train_config("train.max_steps=1", f"train.init_from={source.checkpoint}"), tmp_path / "next",
                show_progress=False)  # fmt: skip
    assert run.steps == 1
    with pytest.raises(ValueError, match="do not fit this model"):
        load_initial_weights(build_model(tiny_train_config("model.dim=64").model_config()), source.checkpoint)

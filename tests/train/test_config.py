"""Training configs (ptdit.train.config): every shipped config file starts and runs a few steps on CPU with tiny
overrides (and tiny local encoders); clear errors and value coercion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptdit.train.config import load_train_config
from ptdit.train.loop import train
from tests.helpers.tiny_encoders import TINY_T5_DIM, make_tiny_t5, make_tiny_vae, make_tiny_video_vae
from tests.helpers.train import tiny_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_MODEL = [
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "train.device=cpu",
    "train.precision=fp32",
    "train.batch_size=2",
    "train.max_steps=2",
    "train.checkpoint_every=1000",
    "data.num_workers=0",
    "train.grad_checkpointing=false",
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from PIL import Image

    from ptdit.sampling.media import save_mp4

    root = tmp_path_factory.mktemp("assets")
    rng = np.random.default_rng(0)
    images, classes, videos = root / "images", root / "classes", root / "videos"
    for folder in (images, videos):
        folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text(f"a picture number {i}")
        save_mp4(videos / f"{i}.mp4", rng.integers(0, 255, (9, 16, 16, 3), dtype=np.uint8), fps=8)
        (videos / f"{i}.txt").write_text(f"a clip number {i}")
    for name in ("cat", "dog"):
        (classes / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(classes / name / "a.jpg")
    return {
        "t5": make_tiny_t5(root / "t5"),
        "vae": make_tiny_vae(root / "vae"),
        "video_vae": make_tiny_video_vae(root / "wan"),
        "images": images,
        "classes": classes,
        "videos": videos,
    }


def _overrides(name: str, assets) -> list[str]:
    if name.startswith(("demo-", "study-")):  # built-in data and encoders
        return [*TINY_MODEL, "data.size=24", "pipeline.steps=2"]
    common = [
        *TINY_MODEL,
        f"pipeline.text_encoder={assets['t5']}",
        f"model.context_dim={TINY_T5_DIM}",
        "data.size=16",
        "pipeline.steps=2",
    ]
    if name.startswith("t2i"):
        return [
            *common,
            f"pipeline.vae={assets['vae']}",
            f"data.options.root={assets['images']}",
            "model.window_size=[1,2,2]",
        ]
    if name.startswith(("t2v", "t2mv")):
        # 9 frames -> 3 latent frames with the tiny Wan VAE; 8x down -> 2 x 2 latents -> one token
        return [
            *common,
            f"pipeline.vae={assets['video_vae']}",
            f"data.options.root={assets['videos']}",
            "data.options.frames=9",
            "model.in_channels=4",
            "model.out_channels=8",
            "model.window_size=[1,1,1]",
            "model.patch_size=2",
            "data.size=32",
        ]
    assert name == "imagenet-s-class"
    return [
        *TINY_MODEL,
        f"pipeline.vae={assets['vae']}",
        f"data.options.root={assets['classes']}",
        "data.size=16",
        "model.num_classes=2",
        "model.window_size=[1,2,2]",
        "pipeline.steps=2",
    ]


# Staged configs run in tests/train/test_stages.py (their stages set sizes, so --set cannot shrink them).
@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.endswith("-stages")))
def test_config_file_starts_and_runs(name, assets, tmp_path):
    cfg = load_train_config(CONFIGS / f"{name}.yaml", _overrides(name, assets))
    result = train(cfg, tmp_path / "run", show_progress=False)
    assert result.steps == 2 and (result.checkpoint / "model.safetensors").is_file()


def test_all_paper_recipes_are_shipped():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert {
        "demo-t2i",
        "demo-t2v",
        "demo-t2mv",
        "t2i-256",
        "t2i-512",
        "t2i-1024",
        "t2v-256",
        "t2v-512",
        "t2mv-512",
        "imagenet-s-class",
    } <= names
    s_class = load_train_config(CONFIGS / "imagenet-s-class.yaml")
    assert (s_class.optim.lr, s_class.train.batch_size, s_class.train.max_steps) == (1e-4, 256, 400_000)
    assert s_class.train.ema_decay == 0.9999 and s_class.model_config().conditioning == "class"


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys in config section 'optim': \['lrr'\]"):
        tiny_train_config("optim.lrr=1")
    with pytest.raises(ValueError, match="unknown ptdit config keys"):
        tiny_train_config("model.widht=3")
    with pytest.raises(ValueError, match="divisible by processes x grad_accum"):
        train(tiny_train_config("optim.grad_accum=3"), tmp_path / "r", show_progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_train_config(bad)
    with pytest.raises(FileNotFoundError, match="config file"):
        load_train_config(tmp_path / "missing.yaml")


def test_yaml_numbers_written_as_strings_are_coerced_and_bad_values_named():
    cfg = tiny_train_config("optim.lr=2e-3", "train.max_minutes=1")
    assert cfg.optim.lr == 2e-3 and isinstance(cfg.optim.lr, float)
    with pytest.raises(ValueError, match=r"optim.lr must be a number, got 'fast'"):
        tiny_train_config("optim.lr=fast")

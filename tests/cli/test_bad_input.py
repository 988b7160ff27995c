"""The bad-input matrix: every command and the Python API answer bad input with one clear line (exit status 2) or the
right exception, never a traceback, and never write or change a file."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ptdit
from ptdit.cli.main import main
from ptdit.config import PTDiTConfig
from ptdit.train.config import RunConfig
from ptdit.train.loop import train
from tests.helpers.train import tiny_train_config, write_tiny_config

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its size, modification time and content hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            state[str(path.relative_to(root))] = (
                stat.st_size,
                stat.st_mtime_ns,
                hashlib.sha1(path.read_bytes()).digest(),
            )
        else:
            state[str(path.relative_to(root))] = ("dir",)
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory, fixtures_dir) -> dict[str, str]:
    """A trained one-step run, its checkpoint, damaged copies and the other files the cases point at."""
    root = tmp_path_factory.mktemp("bad-input")
    train(tiny_train_config("train.max_steps=1"), root / "run", show_progress=False)
    ckpt = root / "run" / "checkpoints" / "step-0000001"
    (root / "cwd").mkdir()
    (root / "file.txt").write_text("a file, not a folder\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("someone else's work\n")
    (root / "empty").mkdir()
    (root / "demo").mkdir()
    (root / "demo" / ".ptdit-demo").write_text("made by ptdit demo\n")
    (root / "demo" / "metrics.json").write_text("{}\n")
    (root / "bad.yaml").write_text("model:\n  preset: [unclosed\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "bad.json").write_text("{not json")
    (root / "plot.png").write_bytes(b"\x89PNG old plot")
    write_tiny_config(root / "tiny.json", "train.max_steps=1")
    shutil.copytree(ckpt, root / "broken")
    (root / "broken" / "config.json").write_text("{not json")
    shutil.copytree(ckpt, root / "truncated")
    for name in ("model.safetensors", "ema.safetensors"):
        (root / "truncated" / name).write_bytes(b"truncated")
    reference = fixtures_dir / "ptdit_official_image.safetensors"
    with safe_open(str(reference), "pt") as f:
        metadata = f.metadata()
    params = {k.removeprefix("param."): v for k, v in load_file(str(reference)).items() if k.startswith("param.")}
    first = sorted(params)[0]
    save_file({**params, first: params[first] * math.nan}, str(root / "nan.safetensors"), metadata=metadata)
    (root / "truncated.safetensors").write_bytes(b"\x00" * 20)
    ptdit.save_model(ptdit.build_model("PT-DiT/Tiny"), root / "converted")
    names = {"file": "file.txt", "bad_yaml": "bad.yaml", "list_yaml": "list.yaml", "bad_json": "bad.json"}
    names.update(
        {"plot": "plot.png", "tiny": "tiny.json", "nan": "nan.safetensors", "trunc_st": "truncated.safetensors"}
    )
    paths = {key: str(root / name) for key, name in names.items()}
    paths.update({k: str(root / k) for k in ("run", "foreign", "empty", "demo", "broken", "truncated", "converted")})
    return {**paths, "root": str(root), "ckpt": str(ckpt), "reference": str(reference), "configs": str(root / "cwd")}


SAMPLE = ["sample", "--checkpoint", "{ckpt}", "--prompt", "a red circle", "--out", "{root}/cwd/samples"]
TRAIN = ["train", "--config", "{tiny}", "--out", "{root}/cwd/run"]
RESUME = ["train", "--config", "{tiny}", "--out", "{run}", "--resume"]
DEMO = ["demo", "--out", "{demo}", "--minutes", "0.01"]
CONVERT = ["convert-official", "--weights", "{reference}", "--out", "{root}/cwd/converted"]
FLOPS = ["flops", "--model", "PT-DiT/Tiny", "--resolution", "256", "--no-verify"]
BENCH = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "64", "--depth", "1", "--repeats", "1", "--warmup", "0"]

CLI_CASES = [
    # ptdit sample
    ([*SAMPLE, "--steps", "0"], "--steps must be >= 1"),
    ([*SAMPLE, "--steps", "many"], "invalid int value"),
    ([*SAMPLE, "--cfg", "nan"], "not a finite number"),
    ([*SAMPLE, "--cfg", "inf"], "not a finite number"),
    ([*SAMPLE, "--batch-size", "0"], "--batch-size must be >= 1"),
    ([*SAMPLE, "--height", "-16"], "--height must be positive"),
    ([*SAMPLE, "--width", "17"], "multiple of"),
    ([*SAMPLE, "--frames", "8"], "generates single images"),
    pytest.param([*SAMPLE, "--device", "cuda"], "CUDA is not available", marks=NO_CUDA),
    ([*SAMPLE, "--device", "bogus"], "unknown --device 'bogus'"),
    ([*SAMPLE, "--sampler", "euler9"], "unknown --sampler"),
    ([*SAMPLE, "--dtype", "fp16"], "invalid choice"),
    ([*SAMPLE, "--out", "{file}"], "exists and is a file"),
    ([*SAMPLE, "--out", "{file}/samples"], "is a file, not a folder"),
    ([*SAMPLE, "--prompts-file", "{root}/missing.txt"], "not found"),
    (["sample", "--checkpoint", "{root}/missing", "--prompt", "x", "--out", "{root}/cwd/s"], "not found"),
    (["sample", "--checkpoint", "{empty}", "--prompt", "x", "--out", "{root}/cwd/s"], "not found"),
    (["sample", "--checkpoint", "{broken}", "--prompt", "x", "--out", "{root}/cwd/s"], "not valid JSON"),
    (["sample", "--checkpoint", "{truncated}", "--prompt", "x", "--out", "{root}/cwd/s"], "corrupt or truncated"),
    (["sample", "--checkpoint", "{ckpt}", "--out", "{root}/cwd/s"], "needs --prompt"),
    ([*SAMPLE, "--text-encoder", "{root}/no-encoder"], "no-encoder"),
    ([*SAMPLE, "--seed", "x"], "invalid int value"),
    # ptdit train
    (["train", "--config", "{root}/missing.yaml", "--out", "{root}/cwd/r"], "not found"),
    (["train", "--config", "{empty}", "--out", "{root}/cwd/r"], "is a folder"),
    (["train", "--config", "{bad_yaml}", "--out", "{root}/cwd/r"], "is not valid YAML at line 3, column 1"),
    (["train", "--config", "{list_yaml}", "--out", "{root}/cwd/r"], "must hold a mapping"),
    ([*TRAIN, "--set", "optim.lr.x=1"], "optim.lr is a value, not a section"),
    ([*TRAIN, "--set", "train.checkpoint_every=0"], "train.checkpoint_every must be >= 1"),
    ([*TRAIN, "--set", "train.max_minutes=-1"], "train.max_minutes must be > 0"),
    ([*TRAIN, "--set", "optim.lr=nan"], "optim.lr must be a finite number"),
    ([*TRAIN, "--set", "optim.lr=.inf"], "optim.lr must be a finite number"),
    ([*TRAIN, "--set", "optim.lr=fast"], "optim.lr must be a number"),
    ([*TRAIN, "--set", "train.batch_size=2.5"], "train.batch_size must be an integer"),
    ([*TRAIN, "--set", "train.compile=maybe"], "train.compile must be true or false"),
    ([*TRAIN, "--set", "train.ema_decay=1.5"], "train.ema_decay must be in [0, 1)"),
    ([*TRAIN, "--set", "optim.betas=[0.9]"], "optim.betas must be a list of 2 values"),
    ([*TRAIN, "--set", "optim.lrr=1"], "unknown keys in config section 'optim'"),
    ([*TRAIN, "--set", "model.widht=3"], "unknown ptdit config keys ['widht']"),
    ([*TRAIN, "--set", "model.depth=nan"], "depth must be an integer"),
    ([*TRAIN, "--set", "data.options.max_objets=1"], "unknown data.options ['max_objets']"),
    ([*TRAIN, "--set", "data.dataset=nope"], "unknown data.dataset 'nope'"),
    ([*TRAIN, "--set", "lr=1"], "must be section.key"),
    ([*TRAIN, "--set", "optim.lr"], "expects key=value"),
    ([*TRAIN, "--set", "optim.lr=[1"], "not valid YAML"),
    ([*TRAIN, "--set", "pipeline.steps=0"], "pipeline.steps must be a positive integer"),
    ([*TRAIN, "--set", "train.precision=fp16"], "train.precision must be"),
    ([*TRAIN, "--set", "train.device=tpu"], "train.device must be 'cpu' or 'cuda'"),
    pytest.param([*TRAIN, "--set", "train.device=cuda"], "no CUDA device is available", marks=NO_CUDA),
    ([*TRAIN, "--set", "optim.grad_accum=3"], "must be divisible by processes x grad_accum"),
    ([*TRAIN, "--max-steps", "-1"], "must be >= 0"),
    (["train", "--config", "{tiny}", "--out", "{file}"], "exists and is a file"),
    (["train", "--config", "{tiny}", "--out", "{foreign}"], "not part of a ptdit run (notes.txt)"),
    ([*TRAIN, "--resume"], "no checkpoint"),
    ([*TRAIN, "--allow-config-change"], "only applies with --resume"),
    (["train", "--config", "{tiny}", "--out", "{run}"], "pass --resume"),
    ([*RESUME, "--set", "model.depth=2"], "model.depth: 1 -> 2"),
    ([*RESUME, "--set", "model.dim=64", "--set", "model.num_heads=4"], "model.dim: 32 -> 64"),
    ([*RESUME, "--set", "pipeline.task=t2v"], "pipeline.task: 't2i' -> 't2v'"),
    ([*RESUME, "--set", "train.batch_size=8"], "train.batch_size: 4 -> 8"),
    ([*RESUME, "--set", "data.options.max_objects=2"], "--allow-config-change"),
    # ptdit demo: checked before the previous demo folder is touched
    ([*DEMO, "--minutes", "nan"], "not a finite number"),
    ([*DEMO, "--minutes", "0"], "must be positive"),
    ([*DEMO, "--minutes", "-1"], "must be positive"),
    ([*DEMO, "--processes", "0"], "must be positive"),
    ([*DEMO, "--set", "optim.nope=1"], "unknown keys in config section 'optim'"),
    ([*DEMO, "--set", "train.batch_size=0"], "train.batch_size must be >= 1"),
    ([*DEMO, "--set", "data.options.colour=1"], "unknown data.options ['colour']"),
    ([*DEMO, "--task", "t3d"], "invalid choice"),
    (["demo", "--out", "{file}"], "exists and is a file"),
    (["demo", "--out", "{foreign}"], "was not made by `ptdit demo`"),
    (["demo", "--out", "{run}"], "was not made by `ptdit demo`"),
    # ptdit convert-official
    (["convert-official", "--weights", "{root}/missing.pt", "--out", "{root}/cwd/c"], "not found"),
    (["convert-official", "--weights", "{nan}", "--out", "{root}/cwd/c"], "NaN or infinite values"),
    (["convert-official", "--weights", "{trunc_st}", "--out", "{root}/cwd/c"], "corrupt or truncated"),
    (["convert-official", "--weights", "{file}", "--out", "{root}/cwd/c"], "only .safetensors files"),
    ([*CONVERT[:-1], "{file}"], "exists and is a file"),
    ([*CONVERT[:-1], "{foreign}"], "not empty and not a ptdit checkpoint"),
    ([*CONVERT[:-1], "{converted}"], "pass --overwrite"),
    ([*CONVERT, "--config", "{root}/missing.json"], "not found"),
    ([*CONVERT, "--config", "{bad_json}"], "not valid JSON"),
    # ptdit flops
    (["flops", "--model", "Nope"], "unknown model preset"),
    ([*FLOPS, "--resolution", "0"], "must be positive"),
    ([*FLOPS, "--resolution", "100"], "multiple of 16 px"),
    ([*FLOPS, "--resolution", "big"], "invalid int value"),
    ([*FLOPS, "--window", "0", "1", "1"], "--window sizes must be positive"),
    ([*FLOPS, "--batch", "0"], "must be positive"),
    ([*FLOPS, "--plot", "{plot}"], "pass --overwrite"),
    ([*FLOPS, "--plot", "{root}/cwd/plot.txt"], "give a file ending in .png"),
    # ptdit bench
    (["bench", "--model", "Nope"], "unknown model"),
    ([*BENCH, "--repeats", "0"], "repeats must be >= 1"),
    ([*BENCH, "--warmup", "-1"], "warmup must be >= 0"),
    ([*BENCH, "--frames", "0"], "frames must be >= 1"),
    ([*BENCH, "--resolution", "100"], "multiple of 16 px"),
    pytest.param([*BENCH, "--device", "cuda"], "cuda", marks=NO_CUDA),
    # ptdit, ptdit models
    (["models", "--bogus"], "unrecognized arguments"),
    (["nope"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_cli_bad_input_is_one_line_and_writes_nothing(world, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(world["root"] + "/cwd")  # relative default outputs (samples/, runs/demo) would land here
    root = Path(world["root"])
    before = snapshot(root)
    args = [a.format(**world) for a in argv]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1 and err.startswith((f"ptdit {argv[0]}: error: ", "ptdit: error: ")), err
    assert message in err, err
    assert snapshot(root) == before, "a bad input wrote or changed files"


def _latents(dtype=torch.float32, channels=4, batch=2):
    return torch.randn(batch, channels, 1, 16, 16).to(dtype)


@pytest.fixture(scope="module")
def tiny():
    return ptdit.build_model("PT-DiT/Tiny", window_size=(1, 2, 2)).eval()


def _call(model, x=None, t=None, context=None, mask=None, **kwargs):
    ctx_dim = model.config.context_dim
    x = _latents() if x is None else x
    t = torch.tensor([10.0, 500.0]) if t is None else t
    context = torch.randn(2, 5, ctx_dim) if context is None else context
    mask = torch.ones(2, 5) if mask is None else mask
    return model(x, t, context, mask, **kwargs)


API_CASES = [
    ("build_model unknown name", lambda m, p: ptdit.build_model("PT-DiT/Nope"), ValueError, "unknown model preset"),
    ("build_model unknown field", lambda m, p: ptdit.build_model("PT-DiT/Tiny", widht=3), ValueError, "widht"),
    ("build_model bad depth", lambda m, p: ptdit.build_model("PT-DiT/Tiny", depth=-1), ValueError, "depth"),
    ("build_model nan ratio", lambda m, p: ptdit.build_model("PT-DiT/Tiny", mlp_ratio=math.nan), ValueError, "finite"),
    ("config float depth", lambda m, p: PTDiTConfig(depth=2.5), ValueError, "depth must be an integer"),
    ("config bool dim", lambda m, p: PTDiTConfig(dim=True), ValueError, "dim must be an integer"),
    ("run config nan minutes", lambda m, p: RunConfig(max_minutes=math.nan), ValueError, "finite"),
    ("wrong channel count", lambda m, p: _call(m, x=_latents(channels=3)), ValueError, "3 channels"),
    ("image without frame axis", lambda m, p: _call(m, x=torch.randn(2, 4, 16, 16)), ValueError, "frame axis"),
    ("integer latents", lambda m, p: _call(m, x=_latents(torch.long)), TypeError, "floating point"),
    ("float16 latents", lambda m, p: _call(m, x=_latents(torch.float16)), TypeError, "float16"),
    ("float64 latents", lambda m, p: _call(m, x=_latents(torch.float64)), TypeError, "float64"),
    ("numpy latents", lambda m, p: _call(m, x=_latents().numpy()), TypeError, "torch.Tensor"),
    ("batch of context", lambda m, p: _call(m, context=torch.randn(3, 5, 64)), ValueError, "context must be"),
    ("context width", lambda m, p: _call(m, context=torch.randn(2, 5, 65)), ValueError, "context must be"),
    ("integer context", lambda m, p: _call(m, context=torch.ones(2, 5, 64, dtype=torch.long)), TypeError, "context"),
    ("mask shape", lambda m, p: _call(m, mask=torch.ones(2, 6)), ValueError, "context_mask must be"),
    ("mask 3-d", lambda m, p: _call(m, mask=torch.ones(2, 1, 5)), ValueError, "context_mask must be"),
    ("timesteps per batch", lambda m, p: _call(m, t=torch.ones(3)), ValueError, "one entry per sample"),
    ("timesteps 2-d", lambda m, p: _call(m, t=torch.ones(2, 2)), ValueError, "shape (2, 2)"),
    ("no context", lambda m, p: m(_latents(), torch.ones(2)), ValueError, "text-conditional"),
    ("grid vs patch", lambda m, p: _call(m, x=torch.randn(2, 4, 1, 17, 16)), ValueError, "nearest valid: H=16 or 18"),
    ("save_model into a file", lambda m, p: ptdit.save_model(m, p / "f.txt"), FileExistsError, "is a file"),
    ("save_model into a foreign folder", lambda m, p: ptdit.save_model(m, p / "d"), FileExistsError, "not empty"),
    ("load_model missing", lambda m, p: ptdit.load_model(p / "missing"), FileNotFoundError, "not found"),
    ("load_model bogus device", lambda m, p: ptdit.load_model(p / "ckpt", device="bogus"), ValueError, "device"),
]


@pytest.mark.parametrize(("name", "call", "error", "message"), API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api_bad_input_raises_the_right_error(tiny, tmp_path, name, call, error, message):
    (tmp_path / "f.txt").write_text("keep me\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("keep me too\n")
    ptdit.save_model(tiny, tmp_path / "ckpt")
    before = snapshot(tmp_path)
    with pytest.raises(error) as info:
        call(tiny, tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert snapshot(tmp_path) == before

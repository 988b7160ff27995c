"""`ptdit bench` at tiny settings: finishes in seconds, valid JSON, consistent derived figures."""

from __future__ import annotations

import json

import pytest

from ptdit.allocator import glibc
from ptdit.bench.harness import DIFFUSERS_PIXART, BenchSettings, add_ratios, bench_config, run_benchmarks
from ptdit.cli.main import main
from ptdit.eval.flops import analytic_macs, token_grid

TINY = ["--depth", "1", "--width", "64", "--heads", "4", "--repeats", "1", "--warmup", "0", "--text-tokens", "8"]
REQUIRED = ("model", "resolution", "frames", "depth", "device", "dtype", "forward_ms", "train_step_ms")


def test_bench_cli_all_models_json(capsys):
    models = ["PT-DiT/XL", "DiT-XL/2", "PixArt-alpha-XL/2", DIFFUSERS_PIXART]
    assert main(["bench", "--model", *models, "--resolution", "64", *TINY, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == models
    for r in rows:
        for key in (*REQUIRED, "peak_memory_mb", "gmac"):
            assert key in r
        assert r["depth"] == 1 and r["width"] == 64 and r["device"] == "cpu" and r["dtype"] == "fp32"
        assert r["forward_ms"] > 0 and r["train_step_ms"] > 0 and r["gmac"] > 0
    assert rows[0]["forward_time_ratio"] == 1.0 and rows[0]["forward_realised_speedup"] == 1.0
    # diffusers' PixArt (counted by FlopCounterMode) has exactly our PixArt-alpha's MACs (analytic).
    assert rows[3]["gmac"] == pytest.approx(rows[2]["gmac"], rel=1e-9)
    assert rows[3]["gmac_fwd_bwd"] == pytest.approx(rows[2]["gmac_fwd_bwd"], rel=1e-9)


def test_bench_forward_only_bf16_and_table(capsys):
    assert (
        main(["bench", "--model", "PT-DiT/Tiny", "--resolution", "128", *TINY, "--forward-only", "--dtype", "bf16"])
        == 0
    )
    out = capsys.readouterr().out
    assert "realised" in out and "PT-DiT/Tiny" in out
    rows = run_benchmarks(["PT-DiT/Tiny"], [128], BenchSettings(resolution=128, depth=1, repeats=1, forward_only=True))
    assert rows[0]["train_step_ms"] is None and rows[0]["window"] == [1, 1, 1]


def test_bench_video_and_window(capsys):
    args = ["bench", "--model", "PT-DiT/Tiny", "DiT-S/2", "--resolution", "64", "--frames", "9", *TINY]
    assert main([*args, "--window", "1", "2", "2", "--forward-only", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["tokens"] == 3 * 4 * 4 and rows[0]["window"] == [1, 2, 2]
    config = bench_config("DiT-S/2", BenchSettings(resolution=64, depth=1, width=64, heads=4))
    assert rows[1]["gmac"] == pytest.approx(analytic_macs(config, token_grid(64, 9)).forward / 1e9)


def test_window_report(capsys):
    args = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "256", *TINY, "--window-report", "--json"]
    assert main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["window"] == [1, 2, 2] and row["windows"] == 64
    assert 0 < row["masked_windows"] < row["windows"]  # only the windows at the wrap need the mask
    for key in ("window_ms", "shifted_split_ms", "shifted_all_masked_ms", "roll_ms"):
        assert row[key] > 0


def test_add_ratios_realised_speedup_definition():
    rows = [
        {"model": "pt", "resolution": 1, "frames": 1, "forward_ms": 50.0, "gmac": 5.0, "train_step_ms": None},
        {"model": "dit", "resolution": 1, "frames": 1, "forward_ms": 100.0, "gmac": 10.0, "train_step_ms": None},
        {"model": "dit", "resolution": 1, "frames": 1, "forward_ms": 80.0, "gmac": 10.0, "train_step_ms": None},
    ]
    add_ratios(rows)
    # (t_baseline / t_ptdit) / (flops_baseline / flops_ptdit)
    assert rows[1]["forward_realised_speedup"] == pytest.approx(1.0)
    assert rows[2]["forward_realised_speedup"] == pytest.approx((80 / 50) / (10 / 5))
    assert rows[2]["train_realised_speedup"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "Nope"], "unknown model"),
        (["--model", "PT-DiT/Tiny", "--repeats", "0"], "repeats must be >= 1"),
        (["--model", "PT-DiT/Tiny", "--resolution", "100"], "multiple of 16 px"),
        (["--model", "PT-DiT/Tiny", "--device", "cuda"], "cuda"),
        ([DIFFUSERS_PIXART.join(["--model=", ""]), "--frames", "9", "--resolution", "64"], "image model"),
    ],
)
def test_bench_bad_input_is_one_line_error(capsys, args, message):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["bench", *TINY, *args]) == 2  # later options win
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_pipeline_bench_reports_each_stage():
    """The released-pipeline benchmark at toy sizes: three stages with FLOPs, limits and peak memory."""
    from ptdit.bench.pipeline import PipelineBenchSettings, run_pipeline_bench

    settings = PipelineBenchSettings(
        resolution=128,
        steps=1,
        depth=1,
        t5={"vocab_size": 100, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 1, "num_heads": 4},
        vae={"hidden_size": 32, "hidden_size_mult": [1, 1, 1, 1], "tile_sample_min_size": 64},
        matmul_size=128,
        text_tokens=8,
    )
    report = run_pipeline_bench(settings, log=lambda line: None)
    assert [s["stage"] for s in report["stages"]] == ["text", "denoise", "decode"]
    for stage in report["stages"]:
        assert stage["flops"] > 0 and stage["seconds"] > 0 and stage["limit_seconds"] > 0
    assert report["stages"][0]["dtype"] == "fp32" and report["stages"][1]["dtype"] == "bf16"
    assert report["time_over_limit"] == pytest.approx(report["total_seconds"] / report["limit_seconds"])


def test_interleaved_ms_runs_rounds_in_turn():
    from ptdit.bench.timing import interleaved_ms

    calls: list[str] = []
    fns = [lambda name=name: calls.append(name) for name in "ABC"]
    times = interleaved_ms(fns, repeats=3, warmup=1, device="cpu")
    assert calls == list("ABC" * 4)  # one warm-up round, then three timed rounds, each A, B, C
    assert [len(t) for t in times] == [3, 3, 3] and all(x >= 0 for t in times for x in t)


def test_spread_median_range_and_quartiles():
    from ptdit.bench.timing import spread

    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"]) == (3.0, 1.0, 5.0, 2.0, 4.0)
    assert spread([7.0]) == {"median": 7.0, "min": 7.0, "max": 7.0, "q1": 7.0, "q3": 7.0}


def test_models_are_timed_interleaved_after_their_warm_up(monkeypatch):
    import ptdit.bench.harness as harness

    order: list[tuple[str, str]] = []
    forward, train = harness._forward, harness._train

    def recording(kind, wrap):
        def make(runner):
            call = wrap(runner)
            return lambda: (order.append((kind, runner.name)), call())

        return make

    monkeypatch.setattr(harness, "_forward", recording("fwd", forward))
    monkeypatch.setattr(harness, "_train", recording("train", train))
    settings = BenchSettings(resolution=64, depth=1, width=64, heads=4, text_tokens=4, repeats=2, warmup=1)
    run_benchmarks(["PT-DiT/Tiny", "DiT-S/2"], [64], settings, progress=False)
    a, b = "PT-DiT/Tiny", "DiT-S/2"
    warm_up = [("fwd", a), ("train", a), ("fwd", b), ("train", b)]
    rounds = [("fwd", a), ("fwd", b), ("train", a), ("train", b)] * 2
    assert order == warm_up + rounds


def test_report_has_spread_and_share_of_the_matmul_rate():
    settings = BenchSettings(resolution=64, depth=1, width=64, heads=4, text_tokens=4, repeats=3, warmup=0)
    rows = run_benchmarks(["PT-DiT/Tiny", "DiT-S/2"], [64], settings, progress=False)
    assert rows[0]["matmul_size"] == rows[1]["matmul_size"] >= 128  # one reference per size, shared by the models
    for r in rows:
        assert r["order"] == "interleaved" and r["warmup"] == 1  # at least one warm-up call, even with --warmup 0
        for key in ("forward_ms", "train_step_ms"):
            s = r[f"{key}_spread"]
            assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"] and s["median"] == r[key]
        assert r["matmul_gflops_per_s"] > 0
        assert r["forward_share_of_matmul"] == pytest.approx(r["forward_gflops_per_s"] / r["matmul_gflops_per_s"])
        assert r["train_share_of_matmul"] == pytest.approx(r["train_gflops_per_s"] / r["matmul_gflops_per_s"])


def test_profile_lists_operators_by_self_time(capsys):
    args = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "64", *TINY, "--profile", "4", "--json"]
    assert main(args) == 0
    (report,) = json.loads(capsys.readouterr().out)
    ops = report["ops"]
    assert len(ops) == 4 and report["forward_ms"] > 0
    assert [o["self_ms"] for o in ops] == sorted((o["self_ms"] for o in ops), reverse=True)
    assert all(0 < o["share"] <= 1 and o["calls"] >= 1 for o in ops)
    assert any("mm" in o["op"] or "attention" in o["op"] for o in ops)  # the matmuls are among the top operators


def test_reference_linear_runs_the_reference_path_and_restores_the_switch(capsys, monkeypatch):
    import json

    from ptdit.nn import layers
    from ptdit.nn.layers import Linear

    seen = []
    forward = Linear.forward

    def spy(self, x):
        seen.append(self._use_fused(x))
        return forward(self, x)

    monkeypatch.setattr(Linear, "forward", spy)
    args = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "128", *TINY, "--forward-only", "--dtype", "bf16"]
    assert main([*args, "--reference-linear", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert seen and not any(seen) and rows[0]["linear"] == "reference"
    assert Linear.fused_cpu  # restored for the rest of the process
    seen.clear()
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["linear"] == "fast path where eligible"
    if layers._onednn_linear_available():
        assert any(seen)  # bf16 forward passes on CPU take the fast path


@pytest.mark.skipif(glibc() is None, reason="glibc only")
def test_bench_command_keeps_freed_blocks_and_says_so(capsys, monkeypatch):
    from ptdit import allocator

    monkeypatch.delenv(allocator.ENV_VAR, raising=False)
    monkeypatch.setitem(allocator._state, "kept", False)  # as in a fresh process
    args = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "64", *TINY, "--forward-only", "--json"]
    assert main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["cpu_allocator"] == "keep"  # `ptdit` applies ptdit.allocator.keep_freed_memory at start


@pytest.mark.parametrize("backend", ["math", "flex"])
def test_attention_backend_is_applied_and_recorded(backend, capsys, monkeypatch):
    from ptdit.attention import functional

    seen = []
    resolve = functional.resolve_backend

    def spy(b=None):
        seen.append(resolve(b))
        return seen[-1]

    monkeypatch.setattr(functional, "resolve_backend", spy)
    args = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "64", *TINY, "--forward-only", "--json"]
    assert main([*args, "--attention", backend]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["attention"] == backend and seen and {b.value for b in seen} == {backend}


def test_flex_training_step_on_cpu_is_refused_in_one_line(capsys):
    args = ["bench", "--model", "PT-DiT/Tiny", "--resolution", "64", *TINY, "--attention", "flex"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--forward-only" in err[0]

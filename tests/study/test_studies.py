"""Each study's quick mode end to end (tiny steps and evaluations): it runs, writes valid JSON with every
variant, plots and a report, and a rerun reuses finished runs."""

from __future__ import annotations

import json
import math

import pytest

from ptdit.study.ablations import ablation_profile, run_ablations
from ptdit.study.attention import attention_profile, run_attention_study
from ptdit.study.efficiency import efficiency_profile, run_efficiency
from ptdit.study.variants import VARIANT_NAMES


def test_ablations_quick_writes_every_variant(tmp_path):
    profile = ablation_profile("quick", steps=1, seeds=[0])
    summary = run_ablations(tmp_path, profile, progress=False)
    data = json.loads((tmp_path / "ablations.json").read_text())
    assert [row["name"] for row in data["variants"]] == list(VARIANT_NAMES)
    for row in data["variants"]:
        for metric in ("shapes_fd", "adherence", "oracle", "final_loss", "grid_artefact", "train_seconds"):
            assert row[metric]["n"] == 1 and math.isfinite(row[metric]["mean"]), (row["name"], metric)
        assert set(row["oracle_categories"]) >= {"color", "position", "size"}
        assert set(row["adherence_checks"]) == {"color", "shape", "position", "size", "count"}
        assert row["parameters"] > 0 and row["train_macs"] > 0
    assert len({row["train_macs"] for row in data["variants"]}) >= 6  # the variants really differ in cost
    assert set(data["rank_correlation"]) == {"overall", "component", "proxy", "injection", "compression"}
    assert len(data["claims"]) == 10
    assert (tmp_path / "report.html").read_text().count("<img") == 5
    markdown = (tmp_path / "report.md").read_text()  # the same tables for STUDY.md, plots linked
    assert markdown.count("](plots/") == 5 and "| Top-Left proxy |" in markdown
    assert all((tmp_path / "plots" / f"{n}.png").is_file() for n in ("shapes_fd", "oracle", "grid_artefact"))
    # resumable: a second call trains nothing and gives the same numbers
    result = tmp_path / "runs" / "full" / "seed-0" / "result.json"
    stamp = result.stat().st_mtime_ns
    again = run_ablations(tmp_path, profile, progress=False)
    assert result.stat().st_mtime_ns == stamp
    assert again["variants"][0]["shapes_fd"] == summary["variants"][0]["shapes_fd"]


def test_results_written_without_adherence_get_it_from_their_checkpoint(tmp_path):
    """A result from before adherence was measured is evaluated again from its checkpoint: the same samples
    (random proxies included, which draw from the global generator), checked against the stored shapes-FD."""
    from ptdit.study.variants import get_variants

    profile = ablation_profile("quick", steps=1, seeds=[0])
    variants = get_variants(["proxy-random"])
    first = run_ablations(tmp_path, profile, variants, progress=False)["runs"]["proxy-random"][0]
    result = tmp_path / "runs" / "proxy-random" / "seed-0" / "result.json"
    old = {k: v for k, v in json.loads(result.read_text()).items() if not k.startswith("adherence")}
    result.write_text(json.dumps(old))
    again = run_ablations(tmp_path, profile, variants, progress=False)["runs"]["proxy-random"][0]
    assert again["adherence"] == first["adherence"] and again["adherence_checks"] == first["adherence_checks"]
    assert json.loads(result.read_text())["adherence"] == first["adherence"]
    result.write_text(json.dumps({**old, "shapes_fd": old["shapes_fd"] + 1.0}))  # not what the checkpoint gives
    with pytest.raises(RuntimeError, match="evaluated again, shapes_fd is"):
        run_ablations(tmp_path, profile, variants, progress=False)


def test_efficiency_quick_writes_curves_and_ratios(tmp_path):
    scales = efficiency_profile("cpu", quick=True, steps=2)
    data = run_efficiency(tmp_path, scales, progress=False)
    assert json.loads((tmp_path / "efficiency.json").read_text())["study"] == "efficiency"
    assert [s["tokens"] for s in data["scales"]] == [256, 1024]
    for scale in data["scales"]:
        models = {"ptdit", "pixart", "ptdit-class", "dit"}
        assert set(scale["curves"]) == models and set(scale["cost"]) == models
        for curve in scale["curves"].values():
            assert [p["step"] for p in curve] == [1, 2]
            assert curve[0]["macs"] < curve[1]["macs"]
        assert set(scale["ratios"]) == {"pixart", "dit"}
        assert scale["ratios"]["pixart"]["macs_per_step"] > 0
        for ratio in scale["ratios"].values():  # both pairs have quality comparisons
            assert {"macs_to_reach", "fd_at_macs", "seconds_to_reach", "fd_at_seconds"} <= set(ratio)
        dit_run = scale["runs"]["dit"][0]
        assert set(dit_run["oracle_categories"]) == {"class"} and math.isfinite(dit_run["shapes_fd"])
        assert set(dit_run["adherence_checks"]) == {"color", "shape", "count"}
        assert dit_run["adherence"] == pytest.approx(dit_run["oracle"])  # the class oracle is the mean of its checks
    big = data["scales"][1]["cost"]  # attention dominates the global-attention baselines at 1024 tokens
    assert big["pixart"]["attention_share"] > big["ptdit"]["attention_share"]
    assert (tmp_path / "report.html").is_file()


def test_attention_quick_measures_both_models(tmp_path):
    settings = attention_profile(quick=True, steps=1)
    data = run_attention_study(tmp_path, settings, progress=False)
    layers = data["baseline"]["layers"]
    assert len(layers) == 2 * len(settings.timesteps) * len(settings.windows)  # depth x timesteps x windows
    for row in layers:
        assert 0 <= row["in_window_mass"] <= 1 and -1 <= row["cross_window"] <= 1
    assert {"giim", "window", "shifted_window", "text", "ffn"} <= set(data["ptdit"]["branches"][0])
    assert json.loads((tmp_path / "attention.json").read_text())["study"] == "attention"


def test_study_cli_is_registered(capsys):
    from ptdit.cli.main import main

    with pytest.raises(SystemExit):
        main(["study", "--help"])
    assert "ablations" in capsys.readouterr().out
    assert main(["study", "ablations", "--quick", "--variant", "nope", "--out", "/nonexistent/x"]) == 2


@pytest.mark.slow
def test_ablations_quick_cli_with_two_seeds(tmp_path, capsys):
    """The full quick mode through the command line: 10 variants x 2 seeds, spread over 2 seeds."""
    from ptdit.cli.main import main

    assert main(["study", "ablations", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "ablations.json").read_text())
    assert all(row["shapes_fd"]["n"] == 2 for row in data["variants"])
    assert "Spearman" in capsys.readouterr().out

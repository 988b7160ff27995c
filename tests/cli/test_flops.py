"""`ptdit flops`: JSON rows, video tables and plot, window override, one-line errors."""

from __future__ import annotations

import json

import pytest

from ptdit.cli.main import main


def test_flops_cli_json(capsys):
    assert main(["flops", "--model", "PT-DiT/XL", "DiT-XL/2", "--resolution", "256", "512", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["resolution"]) for r in rows] == [
        ("PT-DiT/XL", 256),
        ("DiT-XL/2", 256),
        ("PT-DiT/XL", 512),
        ("DiT-XL/2", 512),
    ]
    for r in rows:
        for key in ("model", "resolution", "frames", "tokens", "gmac", "gmac_attention", "gmac_text_attention"):
            assert key in r
        assert r["counted_rel_diff"] < 0.01
        assert r["gflops"] == pytest.approx(2 * r["gmac"])
    assert rows[0]["window"] == [1, 2, 2] and rows[2]["window"] == [1, 4, 4]
    assert rows[1]["gmac_text_attention"] == 0  # DiT has no text


def test_flops_cli_video_tables_and_plot(capsys, tmp_path):
    plot = tmp_path / "flops.png"
    args = ["flops", "--model", "PT-DiT/B", "PixArt-alpha-XL/2", "--resolution", "256", "--frames", "1", "96"]
    assert main([*args, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "MAC convention" in out and "2 x MAC convention" in out
    assert "6144" in out  # 96 frames at 256 px -> 24 x 16 x 16 tokens
    assert "Eq. 4" in out and "34.38%" in out and "3.52%" in out
    assert "Crossover" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flops_cli_window_override_and_bad_input(capsys):
    assert main(["flops", "--model", "PT-DiT/XL", "--resolution", "256", "--window", "1", "4", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["window"] == [1, 4, 4]
    assert main(["flops", "--model", "PT-DiT/XL", "--resolution", "100"]) == 2
    assert "multiple of 16 px" in capsys.readouterr().err
    assert main(["flops", "--model", "Nope"]) == 2
    assert "unknown model preset" in capsys.readouterr().err


def test_flops_cli_reports_padding(capsys):
    """T2MV's 24 views (6 latent frames) with the video window p_f = 4: padded to 8 frames, cost reported."""
    args = ["flops", "--model", "PT-DiT/XL", "--resolution", "512", "--frames", "24", "--window", "4", "4", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Padding" in out and "6x32x32" in out and "8x32x32" in out and "33.3%" in out
    assert main([*args, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["padding_tokens"] == 2048 and row["gmac_padding"] > 0 and row["counted_rel_diff"] < 0.01
    video = ["flops", "--model", "PT-DiT/XL", "--resolution", "512", "--frames", "96", "--no-verify", "--json"]
    assert main(video) == 0
    assert json.loads(capsys.readouterr().out)[0]["padding_tokens"] == 0  # 24 latent frames: p_f = 4 tiles them

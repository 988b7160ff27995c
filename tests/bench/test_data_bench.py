"""`ptdit bench data` and `ptdit data export` from the command line (numbers are not checked: they are timings)."""

from __future__ import annotations

import json

from ptdit.cli.main import main


def test_export_then_bench_each_format(tmp_path, capsys):
    for fmt in ("wds", "parquet", "folder"):
        out = tmp_path / fmt
        code = main(["data", "export", "--dataset", "shapes", "--num", "12", "--format", fmt, "--out", str(out),
                     "--shard-size", "5", "--size", "24"])  # fmt: skip
        assert code == 0
        capsys.readouterr()
        assert (
            main(["bench", "data", "--format", fmt, "--path", str(out), "--batch", "4", "--batches", "2", "--json"])
            == 0
        )
        row = json.loads(capsys.readouterr().out)
        assert row["samples"] == 12 and row["size"] == 24 and row["samples_per_second"] > 0


def test_export_and_bench_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("mine")
    assert main(["data", "export", "--dataset", "shapes", "--num", "2", "--format", "wds", "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (out / "x").read_text() == "mine"
    assert main(["bench", "data", "--format", "wds"]) == 2
    assert "--path" in capsys.readouterr().err
    code = main(["bench", "data", "--format", "cache", "--path", str(tmp_path)])
    assert code == 2 and "cache" in capsys.readouterr().err


def test_bench_reads_a_feature_cache(tmp_path, capsys):
    from ptdit.train.cache import CacheOptions, write_cache
    from tests.helpers.train import tiny_train_config

    cfg = tiny_train_config("data.options.num_samples=12")
    write_cache(cfg, tmp_path / "cache", CacheOptions(shard_size=5), show_progress=False)
    args = ["bench", "data", "--format", "cache", "--path", str(tmp_path / "cache"), "--batch", "4", "--batches", "2"]
    assert main([*args, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["samples"] == 12 and row["dataset"] == "cache" and row["samples_per_second"] > 0

"""`ptdit models --json`: every preset listed with its parameter counts and shape."""

from __future__ import annotations

import json

from ptdit.cli.main import main


def test_models_json_cli(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    for required in [
        "PT-DiT/S-Class",
        "PT-DiT/B",
        "PT-DiT/L",
        "PT-DiT/XL",
        "PT-DiT/H",
        "DiT-S/2",
        "DiT-B/2",
        "DiT-L/2",
        "DiT-XL/2",
        "PixArt-alpha-XL/2",
    ]:
        assert required in names
    for row in rows:
        assert {"name", "total_parameters", "trainable_parameters", "depth", "width", "heads"} <= set(row)
    xl = rows[names.index("PT-DiT/XL")]
    assert (xl["total_parameters"], xl["depth"], xl["width"], xl["heads"]) == (1_131_629_216, 28, 1152, 16)

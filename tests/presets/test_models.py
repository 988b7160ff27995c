"""Model presets (ptdit.presets.models): parameter formula and known counts, every preset builds."""

from __future__ import annotations

import pytest

from ptdit.models.registry import build_model, count_parameters
from ptdit.presets.models import MODEL_PRESETS


def _formula_text(D, depth):
    return depth * (30 * D * D + 36 * D) + 8 * D * D + 4413 * D + 32


@pytest.mark.parametrize(
    ("name", "D", "depth"),
    [("PT-DiT/B", 640, 12), ("PT-DiT/L", 864, 28), ("PT-DiT/XL", 1152, 28), ("PT-DiT/H", 1440, 30)],
)
def test_text_presets_match_parameter_formula(name, D, depth):
    assert count_parameters(build_model(name, device="meta"))["total"] == _formula_text(D, depth)


def test_known_counts():
    def count(name):
        return count_parameters(build_model(name, device="meta"))

    assert count("PT-DiT/XL")["total"] == 1_131_629_216
    assert count("DiT-XL/2") == {"total": 675_129_632, "trainable": 674_834_720}
    s = count("PT-DiT/S-Class")["total"]
    assert s == 10 * (26 * 288**2 + 32 * 288) + 7 * 288**2 + (17 + 258 + 6 + 2 + 32 + 1001) * 288 + 32


def test_presets_build_and_validate():
    for name in MODEL_PRESETS:
        model = build_model(name, device="meta")
        assert model.config.to_dict()["arch"] in ("ptdit", "dit", "pixart")

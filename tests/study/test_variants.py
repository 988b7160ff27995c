"""Table 2 as study variants: every row present, and each really is the change Table 2 names."""

from __future__ import annotations

import math

import pytest

from ptdit.models.registry import build_model, count_parameters
from ptdit.study.ablations import ablation_profile, claims, rank_correlations, variant_config
from ptdit.study.runs import training_macs
from ptdit.study.variants import GROUPS, VARIANTS, get_variants


@pytest.fixture(scope="module")
def built():
    profile = ablation_profile("full")
    out = {}
    for v in VARIANTS:
        cfg = variant_config(v, profile, 0)
        model = build_model(cfg.model_config(), device="meta")
        out[v.name] = (cfg.model_config(), count_parameters(model)["total"], training_macs(cfg))
    return out


def test_table2_rows_and_paper_values():
    assert len(VARIANTS) == 10 and len({v.name for v in VARIANTS}) == 10
    fid = {v.name: v.paper_fid for v in VARIANTS}
    assert fid["full"] == 19.30 and fid["no-tcm"] == 69.07 and fid["window-1-8-8"] == 20.43
    for group in GROUPS:  # the full model is every group's reference row, plus 2 or 3 alternatives
        assert 3 <= sum(group in v.groups for v in VARIANTS) <= 4
    with pytest.raises(ValueError, match="unknown variant"):
        get_variants(["nope"])


def test_every_variant_has_the_paper_geometry_and_its_own_config(built):
    configs = {name: c for name, (c, _, _) in built.items()}
    assert len({repr(c) for c in configs.values()}) == len(VARIANTS)
    full = configs["full"]
    assert full.window_size == (1, 2, 2) and full.patch_size == 2 and full.conditioning == "text"
    assert (full.proxy_mode, full.injection) == ("mean", "cross_attention")
    assert not configs["no-giim"].use_global_interaction
    assert not configs["no-swa"].use_shifted_window and configs["no-swa"].use_window_attention
    assert not configs["no-tcm"].use_shifted_window and not configs["no-tcm"].use_window_attention
    assert configs["proxy-top-left"].proxy_mode == "first" and configs["proxy-random"].proxy_mode == "random"
    assert configs["inject-linear"].injection_grid == (1, 16, 16)
    # 32 px / patch 2 = 16 x 16 tokens; (1,2,2) -> 64 windows, (1,4,4) -> 16, (1,8,8) -> 4
    for name, windows in (("full", 64), ("window-1-4-4", 16), ("window-1-8-8", 4)):
        assert math.prod(g // w for g, w in zip((1, 16, 16), configs[name].window_size, strict=True)) == windows


def test_variants_differ_in_parameters_or_flops_as_table2_says(built):
    params = {name: p for name, (_, p, _) in built.items()}
    macs = {name: m for name, (_, _, m) in built.items()}
    assert params["no-tcm"] < params["no-swa"] < params["full"]
    assert params["no-giim"] < params["full"]
    assert params["proxy-top-left"] == params["proxy-random"] == params["full"]  # extraction has no weights
    assert params["inject-interpolate"] < params["full"]  # no visual cross-attention
    # the linear injection adds one (L, P) map along the token axis per block: L = 256 tokens, P = 64 proxies
    assert params["inject-linear"] - params["inject-interpolate"] == 4 * (256 * 64 + 256)
    assert params["window-1-4-4"] == params["window-1-8-8"] == params["full"]  # windows change cost, not weights
    # fewer, larger windows: cheaper proxy attention and injection, dearer window attention
    assert len({macs["full"], macs["window-1-4-4"], macs["window-1-8-8"]}) == 3
    assert macs["no-tcm"] < macs["no-swa"] < macs["full"] and macs["no-giim"] < macs["full"]


def _row(name, fd, oracle, std=0.0):
    v = next(v for v in VARIANTS if v.name == name)
    entry = {"mean": fd, "std": std}
    return {"name": name, "groups": list(v.groups), "paper_fid": v.paper_fid, "shapes_fd": entry,
            "oracle": {"mean": oracle, "std": std}, "final_loss": entry}  # fmt: skip


def test_rank_correlation_and_claims_on_a_miniature_that_copies_the_paper():
    rows = [_row(v.name, v.paper_fid, 1 - v.paper_fid / 100) for v in VARIANTS]
    corr = rank_correlations(rows)
    assert corr["overall"]["shapes_fd"] == pytest.approx(1.0)
    assert corr["overall"]["oracle"] == pytest.approx(1.0)
    assert all(corr[g]["shapes_fd"] == pytest.approx(1.0) for g in GROUPS)
    assert all(c["shapes_fd"]["holds"] and c["shapes_fd"]["clear"] for c in claims(rows))
    flipped = [_row(v.name, -v.paper_fid, 0.5, std=100.0) for v in VARIANTS]
    assert rank_correlations(flipped)["overall"]["shapes_fd"] == pytest.approx(-1.0)
    assert rank_correlations(flipped)["overall"]["oracle"] is None  # constant accuracy: undefined
    assert not any(c["shapes_fd"]["holds"] or c["shapes_fd"]["clear"] for c in claims(flipped))

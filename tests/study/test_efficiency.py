"""The efficiency study's comparisons on constructed curves with known answers."""

from __future__ import annotations

import pytest

from ptdit.study.efficiency import compare, efficiency_profile, interpolate_x, interpolate_y, mean_curve


def _curve(xs, fds):
    return [{"step": i + 1, "macs": x, "train_seconds": x / 10, "shapes_fd": f, "oracle": 0.0,
             "adherence": 0.0}
            for i, (x, f) in enumerate(zip(xs, fds, strict=True))]  # fmt: skip


def test_interpolation_finds_the_first_crossing_and_never_extrapolates():
    curve = _curve([10, 20, 30], [100.0, 50.0, 10.0])
    assert interpolate_x(curve, "macs", "shapes_fd", 75.0) == pytest.approx(15.0)
    assert interpolate_x(curve, "macs", "shapes_fd", 100.0) == pytest.approx(10.0)
    assert interpolate_x(curve, "macs", "shapes_fd", 5.0) is None  # never reached
    assert interpolate_y(curve, "macs", "shapes_fd", 25.0) == pytest.approx(30.0)
    assert interpolate_y(curve, "macs", "shapes_fd", 5.0) is None  # before the first point


def test_compare_gives_ratios_of_a_model_twice_as_efficient():
    """PT-DiT reaches every shapes-FD with half the MACs of the baseline."""
    curves = {"ptdit": _curve([5, 10, 15], [100.0, 50.0, 10.0]), "pixart": _curve([10, 20, 30], [100.0, 50.0, 10.0])}
    curves["dit"] = _curve([1, 2, 3], [1.0, 0.5, 0.1])  # another pair's curve must not enter this comparison
    result = compare(curves, "macs", ("ptdit", "pixart"))
    assert result["target_shapes_fd"] == 10.0  # the best FD both reach
    assert result["to_reach_ratio"] == pytest.approx(0.5)
    assert result["budget"] == 15  # the smaller total
    assert result["shapes_fd_at_budget"]["pixart"] == pytest.approx(75.0)
    assert result["at_budget_ratio"] == pytest.approx(10.0 / 75.0)


def test_mean_curve_averages_seeds_point_by_point():
    mean = mean_curve([{"curve": _curve([1, 2], [10.0, 20.0])}, {"curve": _curve([1, 2], [30.0, 40.0])}])
    assert [p["shapes_fd"] for p in mean] == [20.0, 30.0]


def test_profiles_put_the_scales_on_both_sides_of_the_crossover():
    from ptdit.config import config_from_dict
    from ptdit.eval.flops import analytic_macs
    from ptdit.study.efficiency import scale_config

    small, large = efficiency_profile("cpu")
    assert (small.grid, large.grid) == ((1, 16, 16), (1, 32, 32))

    def macs(arch, scale):
        fields = scale_config(arch, scale, 0).model
        return analytic_macs(config_from_dict(fields), scale.grid, text_tokens=12).forward

    assert macs("ptdit", small) > macs("pixart", small)  # below the crossover: PT-DiT's block costs more
    assert macs("ptdit", large) < 0.5 * macs("pixart", large)  # attention dominates the baseline
    assert macs("ptdit-class", small) > macs("dit", small)  # the same for the class-conditional pair
    assert macs("ptdit-class", large) < 0.5 * macs("dit", large)
    with pytest.raises(ValueError, match="unknown efficiency profile"):
        efficiency_profile("tpu")


def test_every_model_trains_at_equal_width_and_depth_with_its_own_conditioning():
    from ptdit.study.efficiency import QUALITY_MODELS, scale_config

    for scale in efficiency_profile("cpu"):
        cfgs = {m: scale_config(m, scale, 0) for m in QUALITY_MODELS}
        models = {m: c.model_config() for m, c in cfgs.items()}
        assert {(c.dim, c.depth, c.num_heads, c.patch_size) for c in models.values()} == {
            (scale.profile.dim, scale.profile.depth, scale.profile.num_heads, scale.patch)
        }
        assert {m: c.conditioning for m, c in models.items()} == {
            "ptdit": "text", "pixart": "text", "ptdit-class": "class", "dit": "class"
        }  # fmt: skip
        assert models["ptdit-class"].num_classes == models["dit"].num_classes == 18
        assert cfgs["dit"].data.options == {"max_objects": 1, "class_labels": True}
        assert cfgs["ptdit"].data.options == {"max_objects": 1}  # the same images, with captions
        assert models["ptdit-class"].window_size == models["ptdit"].window_size
    with pytest.raises(ValueError, match="unknown efficiency model"):
        scale_config("sd3", scale, 0)


def test_select_scales_by_name():
    from ptdit.study.efficiency import select_scales

    scales = efficiency_profile("cpu")
    assert select_scales(scales, []) == scales
    assert [s.name for s in select_scales(scales, ["1024-tokens"])] == ["1024-tokens"]
    with pytest.raises(ValueError, match=r"unknown scale\(s\) \['512'\]"):
        select_scales(scales, ["512"])

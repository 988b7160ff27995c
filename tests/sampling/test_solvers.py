"""Samplers: timestep grids, analytic-Gaussian accuracy, the reference Euler update, determinism, API."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from ptdit.diffusion import ClassifierFreeGuidance, Denoiser, FlowSchedule, NoiseSchedule, VPSchedule, prediction_target
from ptdit.sampling import SAMPLERS, build_timesteps, get_sampler, sample_ddim, sample_flow_euler

DATA_STD = 0.5  # data ~ N(0, DATA_STD^2) per element
SHAPE = (5, 4, 1, 20, 50)  # 20k scalars

# (schedule, prediction the fake network makes, timestep shift)
SETUPS = {
    "flow": (FlowSchedule(), "velocity", 1.0),
    "flow_shift2": (FlowSchedule(), "velocity", 2.0),
    "vp_linear_v": (VPSchedule("linear"), "v", 1.0),
    "vp_cosine_eps": (VPSchedule("cosine"), "eps", 1.0),
}
# First-order samplers lose variance as O(1/S) (Cauchy-Schwarz on each step; about -5% at S = 100 on the
# linear VP schedule), second-order ones as O(1/S^2).
STEPS = {"flow-euler": 400, "ddim": 400, "flow-heun": 50, "dpmpp-2m": 50}


def _gaussian_network(schedule: NoiseSchedule, prediction: str) -> Callable[..., Tensor]:
    """The exact network for data ~ N(0, s^2): E[x0 | x_t] = x_t a s^2 / (a^2 s^2 + sigma^2), in the
    network's own parameterisation, plus 4 junk channels the sampler must never see."""

    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        alpha, sigma = (c.to(x_t).view(-1, 1, 1, 1, 1) for c in schedule.alpha_sigma(t))
        x0 = x_t * alpha * DATA_STD**2 / (alpha**2 * DATA_STD**2 + sigma**2)
        noise = (x_t - alpha * x0) / sigma
        pred = prediction_target(x0, noise, alpha, sigma, prediction)  # type: ignore[arg-type]
        return torch.cat([pred, torch.full_like(pred, 1e4)], dim=1)

    return model


def _noise(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _standard_noise(shape: tuple[int, ...] = SHAPE) -> Tensor:
    """Noise with sample mean 0 and variance exactly 1. The Gaussian denoiser makes every deterministic
    sampler a linear map x -> k x, so the output variance is k^2 with no sampling error: the test
    measures the solver alone."""
    noise = _noise(0, shape)
    return (noise - noise.mean()) / noise.std()


# --------------------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------------------


def test_flow_euler_grid_s30_r2() -> None:
    grid = build_timesteps(FlowSchedule(), 30, shift=2.0)
    assert grid.num_steps == 30 and grid.t.dtype == torch.float64
    expected_head = [1000.0, 983.051, 965.517, 947.368]
    expected_tail = [181.818, 125.0, 64.516, 0.0]
    assert grid.t[:4].tolist() == pytest.approx(expected_head, abs=1e-3)
    assert grid.t[-4:].tolist() == pytest.approx(expected_tail, abs=1e-3)
    torch.testing.assert_close(grid.sigma, grid.t / 1000)
    torch.testing.assert_close(grid.alpha, 1 - grid.t / 1000)
    unshifted = build_timesteps(FlowSchedule(), 30)
    torch.testing.assert_close(unshifted.t[:-1], 1000 * (1 - torch.arange(30, dtype=torch.float64) / 30))


def test_vp_grid_trailing_to_clean() -> None:
    grid = build_timesteps(VPSchedule(), 50)
    assert grid.t.tolist() == [999.0 - 20 * i for i in range(50)] + [-1.0]
    assert grid.alpha[-1].item() == 1.0 and grid.sigma[-1].item() == 0.0
    assert build_timesteps(VPSchedule(), 1000).t.tolist() == [float(i) for i in range(999, -2, -1)]
    with pytest.raises(ValueError, match="between 1 and 1000"):
        build_timesteps(VPSchedule(), 1001)
    with pytest.raises(ValueError, match="flow schedule only"):
        build_timesteps(VPSchedule(), 10, shift=2.0)


@pytest.mark.parametrize("schedule", [FlowSchedule(), VPSchedule()], ids=["flow", "vp"])
@pytest.mark.parametrize("num_steps", [0, -3])
def test_steps_below_one_raise(schedule: NoiseSchedule, num_steps: int) -> None:
    with pytest.raises(ValueError, match=f"num_steps must be .*got {num_steps}"):
        build_timesteps(schedule, num_steps)


# --------------------------------------------------------------------------------------------------------
# Accuracy on analytic Gaussian data
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_on_analytic_gaussian(sampler: str, setup: str) -> None:
    schedule, prediction, shift = SETUPS[setup]
    denoiser = Denoiser(_gaussian_network(schedule, prediction), schedule, prediction)  # type: ignore[arg-type]
    grid = build_timesteps(schedule, STEPS[sampler], shift=shift)
    samples = get_sampler(sampler)(denoiser, _standard_noise(), grid)
    assert samples.shape == SHAPE
    ratio = samples.var().item() / DATA_STD**2
    assert abs(ratio - 1) < 0.03, f"{sampler} on {setup}: variance ratio {ratio:.4f}"


def test_second_order_beats_first_order() -> None:
    schedule = FlowSchedule()
    denoiser = Denoiser(_gaussian_network(schedule, "velocity"), schedule, "velocity")
    grid = build_timesteps(schedule, 10)
    x = _noise(shape=(1, 4, 1, 4, 4))
    # The exact ODE map for Gaussian data is linear: x_0 = DATA_STD * x_T (the start is pure noise).
    errors = {name: (SAMPLERS[name](denoiser, x, grid) - DATA_STD * x).abs().max().item() for name in SAMPLERS}
    assert errors["flow-heun"] < errors["flow-euler"] / 4
    assert errors["dpmpp-2m"] < errors["ddim"] / 4


# --------------------------------------------------------------------------------------------------------
# Reference update and sampler relations
# --------------------------------------------------------------------------------------------------------


def test_flow_euler_matches_reference_update() -> None:
    """The reference sampler (docs/inference.md#the-reference-sampler): CFG on the doubled batch, channels [0, C), then
    x <- x + v (t_i - t_{i+1}) / 1000."""
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(1)) * 0.3

    def model(x: Tensor, t: Tensor, *, context: Tensor) -> Tensor:
        v = torch.einsum("dc,bcfhw->bdfhw", weight, x) * (1 + t.view(-1, 1, 1, 1, 1) / 1000)
        v = v + context.view(-1, 1, 1, 1, 1)
        return torch.cat([v, -v], dim=1)  # 8 output channels, the last 4 unused

    x = _noise(shape=(2, 4, 1, 8, 8))
    cond, uncond, scale = torch.tensor([0.5, -0.2]), torch.tensor([0.0]), 4.0
    grid = build_timesteps(FlowSchedule(), 30, shift=2.0)

    reference = x.clone()
    times = grid.t.tolist()
    for i in range(30):
        t = torch.full((4,), times[i], dtype=torch.float32)
        out = model(torch.cat([reference, reference]), t, context=torch.cat([cond, uncond.expand(2)]))[:, :4]
        v_cond, v_uncond = out.chunk(2)
        v = v_uncond + scale * (v_cond - v_uncond)
        reference = reference + v * (times[i] - times[i + 1]) / 1000

    guided = ClassifierFreeGuidance(model, scale=scale, uncond={"context": uncond})
    denoiser = functools.partial(Denoiser(guided, FlowSchedule(), "velocity"), context=cond)
    torch.testing.assert_close(sample_flow_euler(denoiser, x, grid), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("setup", ["flow_shift2", "vp_linear_v"])
def test_flow_euler_equals_ddim(setup: str) -> None:
    schedule, prediction, shift = SETUPS[setup]
    denoiser = Denoiser(_gaussian_network(schedule, prediction), schedule, prediction)  # type: ignore[arg-type]
    grid = build_timesteps(schedule, 12, shift=shift)
    x = _noise(shape=(2, 4, 1, 4, 4))
    torch.testing.assert_close(sample_flow_euler(denoiser, x, grid), sample_ddim(denoiser, x, grid))


def test_ddim_eta_one_on_analytic_gaussian() -> None:
    schedule = VPSchedule()
    denoiser = Denoiser(_gaussian_network(schedule, "eps"), schedule, "eps")
    # Ancestral sampling is first order: the variance bias is about -1.5% at 1000 steps (-5.6% at 250).
    grid = build_timesteps(schedule, 1000)
    x = _standard_noise((5, 4, 1, 50, 50))  # 50k scalars: sampling error of the variance about 0.6%
    samples = sample_ddim(denoiser, x, grid, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert abs(samples.var().item() / DATA_STD**2 - 1) < 0.04
    with pytest.raises(ValueError, match="eta"):
        sample_ddim(denoiser, _noise(), grid, eta=-1.0)


# --------------------------------------------------------------------------------------------------------
# Determinism, callback, progress, registry
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_determinism_with_seed(sampler: str) -> None:
    schedule = VPSchedule()
    denoiser = Denoiser(_gaussian_network(schedule, "v"), schedule, "v")
    grid = build_timesteps(schedule, 8)
    kwargs = {"eta": 1.0} if sampler == "ddim" else {}
    runs = [
        get_sampler(sampler)(denoiser, _noise(3), grid, generator=torch.Generator().manual_seed(11), **kwargs)
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    if sampler == "ddim":  # the generator really drives the stochastic sampler
        other = sample_ddim(denoiser, _noise(3), grid, generator=torch.Generator().manual_seed(12), eta=1.0)
        assert not torch.equal(runs[0], other)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_callback_receives_each_step(sampler: str) -> None:
    schedule = FlowSchedule()
    denoiser = Denoiser(_gaussian_network(schedule, "velocity"), schedule, "velocity")
    grid = build_timesteps(schedule, 5, shift=2.0)
    seen: list[tuple[int, float, tuple[int, ...], tuple[int, ...]]] = []
    x = _noise(shape=(2, 4, 1, 4, 4))
    get_sampler(sampler)(
        denoiser, x, grid, callback=lambda i, x, t, d: seen.append((i, t.item(), tuple(x.shape), tuple(d.shape)))
    )
    assert [s[0] for s in seen] == list(range(5))
    assert [s[1] for s in seen] == grid.t[:-1].tolist()
    assert all(s[2] == s[3] == tuple(x.shape) for s in seen)


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    schedule = FlowSchedule()
    denoiser = Denoiser(_gaussian_network(schedule, "velocity"), schedule, "velocity")
    grid = build_timesteps(schedule, 3)
    x = _noise(shape=(1, 4, 1, 4, 4))
    quiet = sample_flow_euler(denoiser, x, grid)
    loud = sample_flow_euler(denoiser, x, grid, progress=True)
    assert torch.equal(quiet, loud)
    assert "flow-euler" in capsys.readouterr().err


def test_get_sampler_names() -> None:
    assert set(SAMPLERS) == {"flow-euler", "flow-heun", "ddim", "dpmpp-2m"}
    assert get_sampler("ddim") is sample_ddim
    with pytest.raises(ValueError, match="unknown sampler 'euler-a'"):
        get_sampler("euler-a")

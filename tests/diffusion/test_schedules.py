"""Noise schedules (flow, VP), timestep sampling, the timestep shift and timestep grids (ptdit.diffusion.schedules)."""

from __future__ import annotations

import math

import pytest
import torch

from ptdit.diffusion import FlowSchedule, TimestepGrid, TimestepShift, VPSchedule, shift_timesteps, timestep_shift_ratio
from tests.helpers.diffusion import latents

# --------------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------------


def test_schedule_endpoints_flow() -> None:
    schedule = FlowSchedule()
    x0, noise = latents(0), latents(1)
    t = torch.tensor([0.0, 1000.0])
    x_t = schedule.add_noise(x0, noise, t)
    assert torch.equal(x_t[0], x0[0])  # t = 0 is clean data
    assert torch.equal(x_t[1], noise[1])  # t = 1000 is pure noise
    alpha, sigma = schedule.alpha_sigma(torch.tensor([250.0]))
    assert alpha.item() == 0.75 and sigma.item() == 0.25


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_vp_alphas_cumprod_monotone(beta_schedule: str) -> None:
    schedule = VPSchedule(beta_schedule)
    alphabar = schedule.alphas_cumprod
    assert alphabar.dtype == torch.float64 and alphabar.shape == (1000,)
    assert bool((alphabar[1:] < alphabar[:-1]).all())
    assert 0.999 < alphabar[0].item() < 1 and 0 < alphabar[-1].item() < 1e-3
    alpha, sigma = schedule.alpha_sigma(torch.arange(-1, 1000, dtype=torch.float64))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(1001, dtype=torch.float64))
    assert alpha[0].item() == 1.0 and sigma[0].item() == 0.0  # t = -1 is the clean end point


def test_vp_linear_and_cosine_betas() -> None:
    linear = VPSchedule("linear").betas
    assert linear[0].item() == pytest.approx(1e-4) and linear[-1].item() == pytest.approx(2e-2)
    cosine = VPSchedule("cosine").betas
    assert cosine.max().item() <= 0.999
    # Nichol & Dhariwal: alphabar_t = f(t) / f(0) with f(u) = cos^2((u + s) / (1 + s) * pi / 2).
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert VPSchedule("cosine").alphas_cumprod[499].item() == pytest.approx(f(0.5) / f(0.0), rel=1e-9)


def test_vp_add_noise_and_bad_times() -> None:
    schedule = VPSchedule()
    x0, noise = latents(0), latents(1)
    t = torch.tensor([0.0, 999.0])
    alphabar = schedule.alphas_cumprod[[0, 999]].float().view(2, 1, 1, 1, 1)
    expected = alphabar.sqrt() * x0 + (1 - alphabar).sqrt() * noise
    torch.testing.assert_close(schedule.add_noise(x0, noise, t), expected)
    with pytest.raises(ValueError, match="integers"):
        schedule.alpha_sigma(torch.tensor([1000.0]))
    with pytest.raises(ValueError, match="integers"):
        schedule.alpha_sigma(torch.tensor([1.5]))


def test_sample_t_ranges_and_determinism() -> None:
    flow = FlowSchedule(timestep_sampling="uniform")
    t = flow.sample_t(4096, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.float32 and t.shape == (4096,)
    assert t.min().item() >= 0 and t.max().item() <= 1000
    logit = FlowSchedule().sample_t(4096, generator=torch.Generator().manual_seed(0))
    assert abs(logit.median().item() - 500) < 30  # sigmoid(N(0, 1)) is symmetric about 1/2
    shifted = FlowSchedule().sample_t(4096, shift=2.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted, shift_timesteps(logit.double(), 2.0).float())
    vp = VPSchedule().sample_t(4096, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vp, vp.round()) and vp.min().item() >= 0 and vp.max().item() <= 999
    again = VPSchedule().sample_t(4096, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vp, again)


def test_bad_schedule_arguments_raise() -> None:
    with pytest.raises(ValueError, match="beta_schedule"):
        VPSchedule("quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timestep_sampling"):
        FlowSchedule(timestep_sampling="normal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flow schedule only"):
        VPSchedule().sample_t(2, shift=2.0)


# --------------------------------------------------------------------------------------------------------
# Timestep shift
# --------------------------------------------------------------------------------------------------------


def test_timestep_shift_ratio_values() -> None:
    assert timestep_shift_ratio(1024, 1024) == 2.0
    assert timestep_shift_ratio(512, 512) == 1.0
    assert timestep_shift_ratio(256, 256) == 0.5
    assert timestep_shift_ratio(512, 512, 17) == pytest.approx(math.sqrt(5))
    assert timestep_shift_ratio(512, 512, 96) == pytest.approx(5.0)  # k = (96 // 17) * 5 = 25
    assert timestep_shift_ratio(512, 512, 16) == 1.0  # reference k = 0, clamped to 1
    assert timestep_shift_ratio(1024, 1024, scale=0.5) == 1.0
    with pytest.raises(ValueError, match="num_frames"):
        timestep_shift_ratio(512, 512, 0)


def test_timestep_shift_identity_and_endpoints() -> None:
    t = torch.linspace(0, 1000, 11, dtype=torch.float64)
    torch.testing.assert_close(shift_timesteps(t, 1.0), t)
    shifted = shift_timesteps(t, 2.0)
    assert shifted[0].item() == 0.0 and shifted[-1].item() == 1000.0
    assert shifted[5].item() == pytest.approx(1000 * 2 * 0.5 / 1.5)
    assert bool((shifted[1:-1] > t[1:-1]).all())  # r > 1 moves times towards noise


def test_timestep_shift_for_latents() -> None:
    shift = TimestepShift()
    assert shift.ratio_for_latents((1, 4, 1, 128, 128)) == 2.0  # 1024^2 image
    assert shift.ratio_for_latents((1, 4, 128, 128)) == 2.0
    assert shift.ratio_for_latents((1, 4, 5, 64, 64)) == pytest.approx(math.sqrt(5))  # 17 frames at 512^2
    assert FlowSchedule().shift_ratio((1, 4, 1, 128, 128)) == 2.0
    assert FlowSchedule(shift=None).shift_ratio((1, 4, 1, 128, 128)) == 1.0
    assert VPSchedule().shift_ratio((1, 4, 1, 128, 128)) == 1.0


def test_timestep_grid_validates() -> None:
    t = torch.tensor([1000.0, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        TimestepGrid(t=t, alpha=torch.tensor([1.0, 1.0]), sigma=torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="equal length"):
        TimestepGrid(t=t, alpha=torch.ones(3), sigma=torch.ones(2))

"""Diffusion process: schedules, timestep shift, prediction conversions, Denoiser, losses, guidance."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from ptdit.diffusion import (
    PREDICTIONS,
    ClassifierFreeGuidance,
    Denoiser,
    DiffusionLoss,
    FlowMatchingLoss,
    FlowSchedule,
    NoiseSchedule,
    TimestepShift,
    VPLoss,
    VPSchedule,
    batch_cond_uncond,
    cfg_combine,
    convert_prediction,
    prediction_target,
    prediction_to_x0,
    shift_timesteps,
    timestep_shift_ratio,
)
from ptdit.diffusion.parameterization import velocity_target, velocity_to_x0

LATENT_SHAPE = (2, 4, 1, 8, 8)  # (B, C, F, H, W)


def _latents(seed: int = 0, shape: tuple[int, ...] = LATENT_SHAPE) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------------


def test_schedule_endpoints_flow() -> None:
    schedule = FlowSchedule()
    x0, noise = _latents(0), _latents(1)
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
    x0, noise = _latents(0), _latents(1)
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


# --------------------------------------------------------------------------------------------------------
# Conversions and Denoiser
# --------------------------------------------------------------------------------------------------------

# (alpha, sigma) pairs of a VP schedule, the flow schedule and an arbitrary path.
COEFS = [(0.8, 0.6), (0.3, 0.7), (0.9, 0.2)]


@pytest.mark.parametrize("alpha,sigma", COEFS)
@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("target", PREDICTIONS)
def test_target_roundtrip_eps_v_x0(alpha: float, sigma: float, source: str, target: str) -> None:
    x0, noise = _latents(0).double(), _latents(1).double()
    x_t = alpha * x0 + sigma * noise
    pred = prediction_target(x0, noise, alpha, sigma, source)  # type: ignore[arg-type]
    converted = convert_prediction(pred, x_t, alpha, sigma, source=source, target=target)  # type: ignore[arg-type]
    torch.testing.assert_close(converted, prediction_target(x0, noise, alpha, sigma, target))  # type: ignore[arg-type]
    back = convert_prediction(converted, x_t, alpha, sigma, source=target, target=source)  # type: ignore[arg-type]
    torch.testing.assert_close(back, pred)


def test_flow_velocity_conversions() -> None:
    schedule = FlowSchedule()
    x0, noise = _latents(0), _latents(1)
    t = torch.tensor([300.0, 1000.0])
    x_t = schedule.add_noise(x0, noise, t)
    u = velocity_target(x0, noise)
    torch.testing.assert_close(u, x0 - noise)
    tau = (t / 1000).view(2, 1, 1, 1, 1)
    # x0 = x_t + tau u, including at pure noise (alpha = 0), where eps-prediction would be singular.
    torch.testing.assert_close(velocity_to_x0(x_t, u, 1 - tau, tau), x0)
    torch.testing.assert_close(prediction_to_x0(u, x_t, 1 - tau, tau, "velocity"), x_t + tau * u)


def test_unknown_prediction_raises() -> None:
    with pytest.raises(ValueError, match="prediction"):
        prediction_target(_latents(0), _latents(1), 0.5, 0.5, "score")  # type: ignore[arg-type]


def _oracle_model(
    x0: Tensor, noise: Tensor, schedule: NoiseSchedule, prediction: str, extra: float = 0.0
) -> Callable[..., Tensor]:
    """A "network" that returns the exact target (recovering the noise from x_t) plus 4 junk channels."""

    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        assert t.shape == (x_t.shape[0],) and t.dtype == torch.float32
        alpha, sigma = (c.float().view(-1, 1, 1, 1, 1) for c in schedule.alpha_sigma(t))
        target = prediction_target(x0, noise, alpha, sigma, prediction)  # type: ignore[arg-type]
        return torch.cat([target, torch.full_like(target, extra)], dim=1)

    return model


@pytest.mark.parametrize(
    "schedule,prediction,t",
    [(FlowSchedule(), "velocity", 730.0), (VPSchedule(), "v", 500.0), (VPSchedule("cosine"), "eps", 200.0)],
)
def test_denoiser_returns_x0_and_ignores_extra_channels(schedule: NoiseSchedule, prediction: str, t: float) -> None:
    x0, noise = _latents(0), _latents(1)
    x_t = schedule.add_noise(x0, noise, torch.full((2,), t))
    for extra in (0.0, 123.0):
        denoiser = Denoiser(_oracle_model(x0, noise, schedule, prediction, extra), schedule, prediction)
        torch.testing.assert_close(denoiser(x_t, torch.tensor(t)), x0, atol=1e-5, rtol=1e-5)
    eps_denoiser = Denoiser(_oracle_model(x0, noise, schedule, prediction), schedule, prediction, output="eps")
    torch.testing.assert_close(eps_denoiser(x_t, t), noise, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------------

LOSSES = {
    "flow": lambda: FlowMatchingLoss(),
    "flow_uniform_noshift": lambda: FlowMatchingLoss(FlowSchedule(timestep_sampling="uniform", shift=None)),
    "vp_v": lambda: VPLoss(),
    "vp_eps_cosine": lambda: VPLoss(VPSchedule("cosine"), prediction="eps"),
}


def _junk_model(extra: float) -> Callable[..., Tensor]:
    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        pred = 0.5 * x_t + t.view(-1, 1, 1, 1, 1) / 1000
        return torch.cat([pred, torch.full_like(pred, extra)], dim=1)

    return model


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_per_sample_shape_B(name: str) -> None:
    loss_fn = LOSSES[name]()
    x0 = _latents(0, (3, 4, 2, 8, 8))
    loss = loss_fn(_junk_model(0.0), x0, {}, generator=torch.Generator().manual_seed(1))
    assert loss.shape == (3,) and loss.dtype == torch.float32 and bool((loss > 0).all())


@pytest.mark.parametrize("name", LOSSES)
def test_loss_ignores_extra_channels(name: str) -> None:
    loss_fn = LOSSES[name]()
    x0 = _latents(0)
    losses = [loss_fn(_junk_model(e), x0, {}, generator=torch.Generator().manual_seed(1)) for e in (0.0, 1e3)]
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("name", LOSSES)
def test_loss_zero_for_oracle_and_pieces_consistent(name: str) -> None:
    loss_fn: DiffusionLoss = LOSSES[name]()
    x0 = _latents(0)
    # Replay the loss's own draws (t, then noise) to build an oracle that knows the noise.
    gen = torch.Generator().manual_seed(7)
    t = loss_fn.sample_t(x0, generator=gen)
    noise = loss_fn.sample_noise(x0, generator=gen)
    model = _oracle_model(x0, noise, loss_fn.schedule, loss_fn.prediction, extra=5.0)
    loss = loss_fn(model, x0, {}, generator=torch.Generator().manual_seed(7))
    assert loss.max().item() < 1e-10
    x_t = loss_fn.add_noise(x0, noise, t)
    pred = loss_fn.target(x0, noise, t)
    alpha, sigma = (c.float().view(-1, 1, 1, 1, 1) for c in loss_fn.schedule.alpha_sigma(t))
    torch.testing.assert_close(prediction_to_x0(pred, x_t, alpha, sigma, loss_fn.prediction), x0)


def test_loss_passes_cond_and_is_deterministic() -> None:
    seen: list[dict] = []

    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        seen.append(cond)
        return torch.cat([x_t, x_t], dim=1)

    loss_fn = FlowMatchingLoss()
    x0 = _latents(0)
    cond = {"context": torch.zeros(2, 3, 5), "context_mask": torch.ones(2, 3, dtype=torch.bool)}
    first = loss_fn(model, x0, cond, generator=torch.Generator().manual_seed(3))
    second = loss_fn(model, x0, cond, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second) and seen[0] is not cond and seen[0].keys() == cond.keys()


def test_vploss_rejects_other_predictions() -> None:
    with pytest.raises(ValueError, match="'v' or 'eps'"):
        VPLoss(prediction="velocity")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------
# Guidance
# --------------------------------------------------------------------------------------------------------


def _conditional_model(calls: list[int]) -> Callable[..., Tensor]:
    """Output depends on x, t, the context (masked mean) and class labels; records batch sizes."""

    def model(x: Tensor, t: Tensor, *, context: Tensor, context_mask: Tensor, class_labels: Tensor) -> Tensor:
        calls.append(x.shape[0])
        ctx = (context * context_mask[..., None]).sum(dim=(1, 2)) / context_mask.sum(dim=1).clamp(min=1)
        bias = (ctx + class_labels.float() + t / 1000).view(-1, 1, 1, 1, 1)
        return torch.cat([x * 0.3 + bias, x * 0.1 - bias], dim=1)

    return model


def _cond_pair() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(5)
    cond = {
        "context": torch.randn(2, 6, 3, generator=gen),
        "context_mask": torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool),
        "class_labels": torch.tensor([3, 7]),
    }
    uncond = {
        "context": torch.randn(1, 6, 3, generator=gen),  # one null embedding, expanded to the batch
        "context_mask": torch.tensor([[1, 0, 0, 0, 0, 0]], dtype=torch.bool),
        "class_labels": torch.tensor([1000, 1000]),
    }
    return cond, uncond


def test_cfg_scale_one_equals_conditional() -> None:
    cond_out, uncond_out = _latents(0), _latents(1)
    torch.testing.assert_close(cfg_combine(cond_out, uncond_out, 1.0), cond_out)
    torch.testing.assert_close(cfg_combine(cond_out, uncond_out, 0.0), uncond_out)
    calls: list[int] = []
    model = _conditional_model(calls)
    cond, uncond = _cond_pair()
    x, t = _latents(2), torch.full((2,), 500.0)
    guided = ClassifierFreeGuidance(model, scale=1.0, uncond=uncond)
    assert torch.equal(guided(x, t, **cond), model(x, t, **cond))


def test_cfg_batched_equals_two_calls() -> None:
    calls: list[int] = []
    model = _conditional_model(calls)
    cond, uncond = _cond_pair()
    x, t = _latents(2), torch.tensor(640.0)
    guided = ClassifierFreeGuidance(model, scale=4.0, uncond=uncond)
    out = guided(x, t, **cond)
    assert calls == [4]  # one batched call on [x; x]
    t_B = t.expand(2)
    out_cond = model(x, t_B, **cond)
    uncond_full = {k: v.expand(2, *v.shape[1:]) for k, v in uncond.items()}
    out_uncond = model(x, t_B, **uncond_full)
    torch.testing.assert_close(out, out_uncond + 4.0 * (out_cond - out_uncond))


def test_batch_cond_uncond_order_and_errors() -> None:
    cond, uncond = _cond_pair()
    batched = batch_cond_uncond({**cond, "flag": True}, uncond, batch_size=2)
    assert torch.equal(batched["class_labels"], torch.tensor([3, 7, 1000, 1000]))  # conditional first
    assert batched["context"].shape == (4, 6, 3) and batched["flag"] is True
    with pytest.raises(ValueError, match="context_mask"):
        batch_cond_uncond(cond, {"context": uncond["context"], "class_labels": uncond["class_labels"]}, 2)
    with pytest.raises(ValueError, match="lacks"):
        batch_cond_uncond({"context": cond["context"]}, uncond, 2)
    with pytest.raises(ValueError, match="must match"):
        batch_cond_uncond({"class_labels": cond["class_labels"]}, {"class_labels": torch.zeros(3)}, 2)

"""Peak memory of one training step, estimated without allocating it (`ptdit bench memory`).

The network is built under torch's `FakeTensorMode` (tensors with shapes, dtypes and devices but no data) and
two training steps run on it exactly as the trainer runs them (`ptdit.train.step.train_step`): autocast forward
(bf16) or plain fp32 forward, MSE loss on the predicted channels, backward outside autocast, gradient clipping,
AdamW from `ptdit.train.optim.build_optimizer`, the fp32 EMA of `ptdit.train.ema.EMA`, `zero_grad(set_to_none=True)`;
activation checkpointing is `ptdit.train.parallel.apply_activation_checkpointing` (per block, non-reentrant).
A `TorchDispatchMode` (`LiveBytes`) sees every tensor each operator returns, counts the bytes of each new
storage once, and subtracts them when the storage is freed (a weakref finaliser), so the live total at every
moment, and its peak, are exact for the tensors the code creates. The second step is the steady state (AdamW's
states exist from the first); the peak is the maximum over both.

What "bf16 mixed precision" means here, as in the trainer (`train.precision: bf16`): fp32 parameters
(the master weights), fp32 gradients, fp32 AdamW states and fp32 EMA; only the forward runs under
`torch.autocast(dtype=bfloat16)`, which keeps bf16 copies of the weights for the backward pass. That is
20 bytes per parameter of training state (4 weights + 4 gradients + 8 AdamW + 4 EMA) plus 2 bytes of bf16
weight copies while activations are alive.

Not counted: kernel-internal workspaces (matmul packing, attention kernels' scratch), the allocator's rounding
and fragmentation, the runtime's own context, and the VAE and text encoder (latents and captions are inputs).
`measure_training_memory` runs the same steps for real and reads the allocator's counter (torch's profiler on CPU,
`max_memory_allocated` on CUDA), which is how the estimate is validated at small sizes (docs/memory.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from ptdit.config import ModelConfig
from ptdit.eval.flops import TEXT_TOKENS, model_window, token_grid
from ptdit.precision import DTYPES, torch_dtype

GIB = 2**30
PRECISIONS = tuple(DTYPES)  # the resolved precisions ("auto" is resolved before an estimate)
DEVICES = ("cuda", "cpu")
LABELS = ("weights", "gradients", "optimizer", "ema", "activations", "backward", "optimizer_step", "inputs")


@dataclass(frozen=True)
class MemorySettings:
    """One training step to estimate.

    Attributes:
        resolution / frames: square image side in px and frame count (latents 8x smaller, 4x shorter).
        batch: samples per step (per device).
        precision: "bf16" (autocast over fp32 weights, as the trainer) or "fp32".
        checkpointing: per-block activation checkpointing, as `train.grad_checkpointing`.
        foreach: AdamW's and clipping's multi-tensor path (torch's default on CUDA, where it costs one extra
            parameter-sized fp32 buffer during the update); False is the per-tensor loop (CPU's default).
        window: PT-DiT window; None = the paper's for the resolution.
        device: where the step runs. "cuda" (default; any accelerator): attention stays in the autocast dtype.
            "cpu": short attention runs in fp32 when it needs gradients, which saves fp32 copies for the backward
            pass (docs/decisions.md#attention-backward-in-fp32-on-cpu). The estimate follows that device's path
            (it always runs on CPU fake tensors); `measure_training_memory` runs the steps there.
    """

    resolution: int
    frames: int = 1
    batch: int = 1
    precision: str = "bf16"
    checkpointing: bool = False
    foreach: bool = True
    text_tokens: int = TEXT_TOKENS
    window: tuple[int, int, int] | None = None
    device: str = "cuda"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("resolution", "frames", "batch", "text_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class _Record:
    nbytes: int
    label: str


class LiveBytes(TorchDispatchMode):
    """Live tensor bytes by label, their running peak, and a snapshot of the labels at the peak.

    Every storage an operator returns is counted once (views and in-place results share it) under the current
    `phase` label and uncounted when it is freed. `track` adds tensors created before the mode was entered;
    `relabel` moves a live storage to another label (e.g. a gradient once it is accumulated).
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.live = dict.fromkeys(LABELS, 0)
        self.phase = "inputs"
        self.current = self.peak = 0
        self.peak_phase = ""
        self.at_peak: dict[str, int] = {}
        self.phase_peaks: dict[str, int] = {}

    def track(self, tensor: torch.Tensor, label: str | None = None) -> None:
        storage = tensor.untyped_storage()
        record = self.records.get(storage)
        if record is not None:
            if label is not None:
                self.relabel(tensor, label)
            return
        record = _Record(storage.nbytes(), label or self.phase)
        self.records[storage] = record
        weakref.finalize(storage, self._free, record)
        self.live[record.label] += record.nbytes
        self.current += record.nbytes
        if self.current >= self.peak:  # ties go to the later moment: the steady state of the second step
            self.peak, self.peak_phase, self.at_peak = self.current, self.phase, dict(self.live)
        self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), self.current)

    def relabel(self, tensor: torch.Tensor, label: str) -> None:
        record = self.records.get(tensor.untyped_storage())
        if record is None:
            self.track(tensor, label)
            return
        self.live[record.label] -= record.nbytes
        self.live[label] += record.nbytes
        record.label = label

    def _free(self, record: _Record) -> None:
        self.live[record.label] -= record.nbytes
        self.current -= record.nbytes

    @contextlib.contextmanager
    def in_phase(self, phase: str) -> Iterator[None]:
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf)
        return out


@dataclass
class MemoryEstimate:
    """Bytes of one training step. `peak_bytes` is the maximum of live tensor bytes; `at_peak` splits it by
    label (weights, gradients, optimizer states, EMA, forward activations, backward temporaries, optimizer-step
    temporaries, inputs); `saved_activation_bytes` is what the forward pass leaves alive for the backward."""

    model: str
    resolution: int
    frames: int
    tokens: int
    window: list[int] | None
    batch: int
    precision: str
    checkpointing: bool
    foreach: bool
    parameters: int
    weight_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    ema_bytes: int
    saved_activation_bytes: int
    peak_bytes: int
    peak_phase: str
    at_peak: dict[str, int] = field(default_factory=dict)
    phase_peaks: dict[str, int] = field(default_factory=dict)

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_gib": self.peak_gib}


def _model_inputs(config: ModelConfig, settings: MemorySettings) -> tuple[torch.Tensor, dict[str, Any], Any]:
    """(latents, keyword arguments, window) of one batch, fp32 as the trainer feeds them."""
    grid = token_grid(settings.resolution, settings.frames, patch_size=config.patch_size)
    window = model_window(config, settings.resolution, settings.frames, settings.window)
    B, p = settings.batch, config.patch_size
    x = torch.randn(B, config.in_channels, grid[0], grid[1] * p, grid[2] * p)
    kwargs: dict[str, Any] = {"t": torch.rand(B) * 1000}
    if window is not None:
        kwargs["window_size"] = window
    if config.conditioning == "text":
        kwargs["context"] = torch.randn(B, settings.text_tokens, config.context_dim)
    elif config.arch == "dit" or config.conditioning == "class":
        kwargs["class_labels"] = torch.randint(0, config.num_classes, (B,))
    return x, kwargs, window


@dataclass
class _Trainer:
    """The trainer's step on a bare network: what `train_step` does for one micro-batch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: Any
    settings: MemorySettings
    phase: Callable[[str], contextlib.AbstractContextManager] = lambda _: contextlib.nullcontext()

    def step(self, x: torch.Tensor, kwargs: dict[str, Any], step: int, after_forward: Callable[[], None]) -> None:
        bf16 = self.settings.precision == "bf16"
        autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16)
        with self.phase("activations"), autocast:
            out = self.model(x, **kwargs)
            pred = out[:, : x.shape[1]].float()
            loss = torch.nn.functional.mse_loss(pred, torch.zeros_like(pred))
            del out, pred
        after_forward()
        with self.phase("backward"):  # outside autocast, as in train_step
            loss.backward()
            del loss
        with self.phase("optimizer_step"):
            params = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=self.settings.foreach)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.ema.update(self.model, step)


def _build_trainer(config: ModelConfig, settings: MemorySettings) -> _Trainer:
    from ptdit.models.registry import build_model
    from ptdit.train.config import OptimConfig
    from ptdit.train.ema import EMA
    from ptdit.train.optim import param_groups
    from ptdit.train.parallel import apply_activation_checkpointing

    model = build_model(config)
    if settings.checkpointing:
        apply_activation_checkpointing(model)
    model.train()
    cfg = OptimConfig()
    groups = param_groups(model, cfg.weight_decay)
    # build_optimizer's AdamW, with the multi-tensor choice made explicit (torch picks it from the device).
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=settings.foreach)
    return _Trainer(model, optimizer, EMA(model, 0.9999), settings)


def _state_tensors(trainer: _Trainer) -> Iterable[tuple[torch.Tensor, str]]:
    for p in trainer.model.parameters():
        yield p, "weights"
    for value in trainer.model.buffers():
        yield value, "weights"
    for shadow in trainer.ema.shadow.values():
        yield shadow, "ema"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    for state in optimizer.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))


def estimate_training_memory(name: str, config: ModelConfig, settings: MemorySettings) -> MemoryEstimate:
    """Peak memory of a training step of `config` at `settings`, from fake tensors (nothing is allocated)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ptdit.attention.functional import cpu_sdpa_upcast

    with FakeTensorMode(), cpu_sdpa_upcast(settings.device == "cpu"):
        trainer = _build_trainer(config, settings)
        x, kwargs, window = _model_inputs(config, settings)
        tracker = LiveBytes()
        for tensor, label in _state_tensors(trainer):
            tracker.track(tensor, label)
        for tensor in (x, *[v for v in kwargs.values() if isinstance(v, torch.Tensor)]):
            tracker.track(tensor, "inputs")
        trainer.phase = tracker.in_phase
        hooks = [
            p.register_post_accumulate_grad_hook(lambda p: tracker.relabel(p.grad, "gradients"))
            for p in trainer.model.parameters()
            if p.requires_grad
        ]
        saved = []
        with tracker:
            for step in range(2):
                before = tracker.current
                trainer.step(x, kwargs, step, lambda before=before: saved.append(tracker.current - before))
                for tensor in _optimizer_tensors(trainer.optimizer):
                    tracker.relabel(tensor, "optimizer")
        for hook in hooks:
            hook.remove()
        return _estimate(name, config, settings, trainer, tracker, window, saved[-1])


def _estimate(
    name: str,
    config: ModelConfig,
    settings: MemorySettings,
    trainer: _Trainer,
    tracker: LiveBytes,
    window: tuple[int, int, int] | None,
    saved: int,
) -> MemoryEstimate:
    params = [p for p in trainer.model.parameters()]
    trainable = [p for p in params if p.requires_grad]
    grid = token_grid(settings.resolution, settings.frames, patch_size=config.patch_size)
    return MemoryEstimate(
        model=name,
        resolution=settings.resolution,
        frames=settings.frames,
        tokens=math.prod(grid) * settings.batch,
        window=list(window) if window else None,
        batch=settings.batch,
        precision=settings.precision,
        checkpointing=settings.checkpointing,
        foreach=settings.foreach,
        parameters=sum(p.numel() for p in params),
        weight_bytes=tracker.live["weights"],
        gradient_bytes=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_bytes=tracker.live["optimizer"],
        ema_bytes=tracker.live["ema"],
        saved_activation_bytes=saved,
        peak_bytes=tracker.peak,
        peak_phase=tracker.peak_phase,
        at_peak={k: v for k, v in tracker.at_peak.items() if v},
        phase_peaks=dict(tracker.phase_peaks),
    )


def vae_encode_frames(frames: int) -> int:
    """Pixel frames the causal VAE encodes for a clip quoted as `frames` (it needs 1 + 4k: 288 -> 289)."""
    return 1 if frames == 1 else 1 + -(-(frames - 1) // 4) * 4


def estimate_vae_encode_memory(resolution: int, frames: int = 1, *, dtype: str = "bf16") -> dict[str, int]:
    """Peak live bytes of the trainer's per-step latent encoding with the released CausalVAE (tiled, as its
    config), on fake tensors: VAE weights in `dtype`, the fp32 pixel batch of one sample, the encoder's
    activations (no_grad) and the latents. This happens before the network's forward pass, so it adds to the
    training state, not to the activations."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ptdit.encoders.causalvae.adapter import CausalVAE
    from ptdit.encoders.causalvae.config import CausalVAEConfig
    from ptdit.encoders.causalvae.model import CausalVAEModel

    previous = torch.get_default_dtype()
    with FakeTensorMode():
        torch.set_default_dtype(torch_dtype(dtype))
        try:
            vae = CausalVAE(CausalVAEModel(CausalVAEConfig()))
        finally:
            torch.set_default_dtype(previous)
        tracker = LiveBytes()
        for tensor in (*vae.parameters(), *vae.buffers()):
            tracker.track(tensor, "weights")
        pixels = torch.randn(1, 3, vae_encode_frames(frames), resolution, resolution)
        tracker.track(pixels, "inputs")
        with tracker:
            vae.encode(pixels)
    return {"vae_weight_bytes": tracker.live["weights"], "vae_encode_peak_bytes": tracker.peak}


# ----------------------------------------------------------------------------------------------------------------
# Measurement (validation at small sizes)
# ----------------------------------------------------------------------------------------------------------------


def _allocator_peak(trace: Path) -> int:
    """Highest 'Total Allocated' of the CPU allocator over a profiler trace (bytes allocated since its start)."""
    events = [e["args"] for e in json.loads(trace.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    if not events:
        return 0
    # The counter is process-wide and outlives a profiling session: subtract what it held before this one.
    baseline = events[0]["Total Allocated"] - events[0]["Bytes"]
    return max(e["Total Allocated"] for e in events) - baseline


def _real_steps(config: ModelConfig, settings: MemorySettings, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.device(settings.device):
        trainer = _build_trainer(config, settings)
        x, kwargs, _ = _model_inputs(config, settings)
    for step in range(2):
        trainer.step(x, kwargs, step, lambda: None)


def measure_training_memory(config: ModelConfig, settings: MemorySettings, *, seed: int = 0) -> dict[str, Any]:
    """Runs the estimated steps for real on `settings.device` (build, two steps) and returns
    * `allocator_peak_bytes`: the peak bytes torch's allocator held, the figure the estimate is checked against.
      CPU: the profiler's counter (every allocation torch makes, kernel workspaces included); CUDA:
      `torch.cuda.max_memory_allocated` over the run, less what was allocated before it;
    * `rss_peak_bytes` (CPU only, else None): the peak resident-set growth of a second run without the profiler
      (`PeakMemory`: also counts freed heap pages that malloc keeps, libraries' buffers and page granularity;
      None off Linux).
    """
    if settings.device == "cuda":
        return _measure_cuda(config, settings, seed)
    from torch.profiler import ProfilerActivity, profile

    from ptdit.bench.timing import PeakMemory

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _real_steps(config, settings, seed)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        allocated = _allocator_peak(trace)
    del prof
    rss = PeakMemory("cpu")
    rss.start()
    _real_steps(config, settings, seed)
    rss_mib = rss.stop()
    return {"allocator_peak_bytes": allocated, "rss_peak_bytes": None if rss_mib is None else int(rss_mib * 2**20)}


def _measure_cuda(config: ModelConfig, settings: MemorySettings, seed: int) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise ValueError(
            "measuring on 'cuda' needs a CUDA build of torch and a visible GPU (torch.cuda.is_available() is "
            "False); measure on the CPU instead (--device cpu)"
        )
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    _real_steps(config, settings, seed)
    torch.cuda.synchronize()
    return {"allocator_peak_bytes": torch.cuda.max_memory_allocated() - before, "rss_peak_bytes": None}


__all__ = [
    "GIB",
    "LiveBytes",
    "MemoryEstimate",
    "MemorySettings",
    "estimate_training_memory",
    "estimate_vae_encode_memory",
    "measure_training_memory",
]

"""Batch features: the one place where a training batch becomes latents and condition inputs, from raw data
(VAE and text encoder run here) or from a feature cache (docs/data.md#feature-caches).

- Raw batches (`pixels`, `caption` / `label`): pixels are flipped when `data.flip` draws it, then VAE-encoded
  (the posterior mean); captions are encoded by the conditioning strategy.
- Cached batches (`latent_mean` [+ `latent_std`], `context` + `context_mask`): latents are sampled from the stored
  posterior, mean + std * eps, with eps from a generator of (seed, step), so resume stays exact; the stored
  embeddings are the condition (`CachedTextConditioning`, whose null condition is the cache's).

Flip draws and latent noise come from their own generators of (seed, step), so turning them on leaves every
other draw of a step unchanged (docs/decisions.md#flip-with-caches).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ptdit.data.cache import FeatureCache
from ptdit.train.config import TrainConfig


def aux_generator(seed: int, step: int, stream: str) -> torch.Generator:
    """A generator of (seed, step, stream), independent of the step's main generator (`step_generator`)."""
    digest = hashlib.sha256(f"{seed}:{step}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _local_rows(state: Any, draw_G: torch.Tensor, local: int) -> torch.Tensor:
    """This process's rows of a draw made for the whole global batch."""
    start = state.info.rank * local
    return draw_G[start : start + local]


def flip_rows(state: Any, local: int) -> torch.Tensor:
    """(local,) bool: which samples of this process's batch are flipped at `state.step` (p = 0.5)."""
    gen = aux_generator(state.cfg.train.seed, state.step, "flip")
    return _local_rows(state, torch.rand(state.cfg.train.batch_size, generator=gen) < 0.5, local)


def _where_B(flip_B: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(flip_B.view(-1, *([1] * (a.ndim - 1))).to(a.device), a, b)


def _cached_latents(state: Any, batch: dict[str, Any]) -> torch.Tensor:
    mean, std = batch["latent_mean"], batch.get("latent_std")
    if state.cfg.data.flip:
        flip_B = flip_rows(state, mean.shape[0])
        if "latent_mean_flip" in batch:  # the cache encoded the flipped pixels too
            mean = _where_B(flip_B, batch["latent_mean_flip"], mean)
            std = _where_B(flip_B, batch["latent_std_flip"], std) if std is not None else None
        else:  # a flip-equivariant (pixel-space) autoencoder: flipping the latents is flipping the pixels
            mean = _where_B(flip_B, mean.flip(-1), mean)
            std = _where_B(flip_B, std.flip(-1), std) if std is not None else None
    if std is None:
        return mean.to(state.info.device)
    gen = aux_generator(state.cfg.train.seed, state.step, "latents")
    eps = _local_rows(state, torch.randn((state.cfg.train.batch_size, *mean.shape[1:]), generator=gen), len(mean))
    return (mean + std * eps).to(state.info.device)


def batch_latents(state: Any, batch: dict[str, Any]) -> torch.Tensor:
    """The clean latents x0 (B_local, C, F', Y, X) float32 of a batch, on the training device."""
    if "latent_mean" in batch:
        return _cached_latents(state, batch)
    pixels = batch["pixels"]
    if state.cfg.data.flip:
        pixels = _where_B(flip_rows(state, pixels.shape[0]), pixels.flip(-1), pixels)
    with torch.no_grad():
        return state.vae.encode(pixels.to(state.info.device)).float()


def condition_inputs(state: Any, batch: dict[str, Any], rows: slice) -> Any:
    """What the conditioning strategy encodes for `rows`: cached embeddings, captions or labels."""
    if "context" in batch:
        return {"context": batch["context"][rows], "context_mask": batch["context_mask"][rows]}
    return batch["caption"][rows] if state.conditioner.kind == "text" else batch.get("label", [])[rows]


def _mismatch(what: str, cached: Any, configured: Any, fix: str) -> ValueError:
    return ValueError(
        f"the feature cache was written with {what}={cached!r} but this config has {configured!r}; {fix}, or write "
        "a new cache from this config with ptdit cache"
    )


def check_cache_config(cache: FeatureCache, cfg: TrainConfig) -> None:
    """Refuses a training config that does not match the cache, naming the first mismatch and the fix."""
    m, model = cache.manifest, cfg.model_config()
    text = m.get("text_encoder")
    checks = [
        ("the conditioning", m["conditioning"], model.conditioning, "train a model with that conditioning"),
        ("pipeline.vae", m["vae"]["name"], cfg.pipeline.vae, f"set pipeline.vae={m['vae']['name']}"),
        ("data.size", m["dataset"]["size"], cfg.data.size, f"set data.size={m['dataset']['size']}"),
        ("latent channels", m["latent_shape"][0], model.in_channels, f"set model.in_channels={m['latent_shape'][0]}"),
    ]
    if text is not None and model.conditioning == "text":
        checks += [
            ("pipeline.text_encoder", text["name"], cfg.pipeline.text_encoder,
             f"set pipeline.text_encoder={text['name']}"),
            ("pipeline.text_max_length", text["max_length"], cfg.pipeline.text_max_length,
             f"set pipeline.text_max_length={text['max_length']}"),
        ]  # fmt: skip
    # data.options, when given, are the source dataset's (`source` names it): they and data.seed must match.
    options, source = dict(cfg.data.options), m["dataset"]
    if "source" in options:
        name = options.pop("source")
        checks.append(("the dataset", source["name"], name, f"set data.options.source={source['name']}"))
    if options:
        for key in sorted(set(options) | set(source["options"])):
            value = source["options"].get(key)
            checks.append((f"data.options.{key}", value, options.get(key), f"set data.options.{key}={value}"))
        checks.append(("data.seed", source["seed"], cfg.data.seed, f"set data.seed={source['seed']}"))
    bucketed = "pixart" if m.get("buckets") else "none"
    checks.append(("data.buckets", bucketed, cfg.data.buckets, f"set data.buckets={bucketed}"))
    for what, cached, configured, fix in checks:
        if cached != configured:
            raise _mismatch(what, cached, configured, fix)


def open_cache(cfg: TrainConfig) -> FeatureCache:
    """The `cache` dataset of `data.path`, checked against the config."""
    if not isinstance(cfg.data.path, str) or not cfg.data.path:
        raise ValueError("data.dataset=cache needs data.path=DIR (one folder written by ptdit cache)")
    cache = FeatureCache(cfg.data.path)
    check_cache_config(cache, cfg)
    m = cache.manifest
    if cfg.data.flip and not m["flip"] and not m["vae"]["flip_equivariant"]:
        raise ValueError(
            f"data.flip needs a feature cache written with --flip (the VAE {m['vae']['name']!r} is not "
            "flip-equivariant); re-run ptdit cache with --flip, or set data.flip=false"
        )
    return cache


class DeferredTextEncoder:
    """The text encoder of a run that trains from a feature cache: loaded on first use (a preview or evaluation
    prompt), since every training embedding is in the cache and a T5-XXL load takes minutes
    (docs/data.md#feature-caches). Its width and length are the cache's; the empty prompt's embedding (the
    null condition) is the cache's stored one; its fingerprint is checked against the cache's when it loads."""

    deferred = True

    def __init__(self, load: Any, cache: FeatureCache) -> None:
        text = cache.manifest["text_encoder"]
        self._load, self._cache, self._encoder = load, cache, None
        self.name, self.fingerprint = text["name"], text["fingerprint"]
        self.dim, self.max_length = int(text["dim"]), int(text["max_length"])

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def encoder(self) -> Any:
        """The real encoder, loaded (and checked against the cache) on the first call."""
        if self._encoder is None:
            from ptdit.encoders.fingerprint import encoder_fingerprint

            encoder = self._load()
            if encoder_fingerprint(encoder) != self.fingerprint:
                raise ValueError(
                    f"the text encoder {self.name!r} loaded now has other weights or settings than the one the "
                    "feature cache was written with; write a new cache with ptdit cache"
                )
            self._encoder = encoder
        return self._encoder

    def encode(self, prompts: Any, *, negative: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.loaded and list(prompts) == [""] and negative:  # the null condition: stored with the cache
            null = self._cache.null_condition()
            return null["context"], null["context_mask"]
        return self.encoder().encode(prompts, negative=negative)

    def __getattr__(self, name: str) -> Any:  # anything else (tokenizer, model, ...) is the real encoder's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.encoder(), name)


def use_cache(state: Any, cache: FeatureCache) -> None:
    """Checks the loaded encoders against the cache's fingerprints, then conditions on the cached embeddings with
    the cache's null condition (the text encoder stays for prompts: previews, evaluation)."""
    from ptdit.encoders.fingerprint import encoder_fingerprint
    from ptdit.recipe.conditioning import CachedTextConditioning

    m = cache.manifest
    if encoder_fingerprint(state.vae) != m["vae"]["fingerprint"]:
        raise ValueError(
            f"the VAE {m['vae']['name']!r} loaded now has other weights than the one the feature cache was written "
            "with; write a new cache with ptdit cache"
        )
    text = m.get("text_encoder")
    if state.conditioner.kind != "text" or text is None:
        return
    loaded = state.text_encoder is not None and not getattr(state.text_encoder, "deferred", False)  # else: on load
    if loaded and encoder_fingerprint(state.text_encoder) != text["fingerprint"]:
        raise ValueError(
            f"the text encoder {text['name']!r} loaded now has other weights or settings than the one the feature "
            "cache was written with; write a new cache with ptdit cache"
        )
    state.conditioner = CachedTextConditioning(cache.null_condition(), state.text_encoder)
    state.null_condition = state.conditioner.null(state.info.device)


__all__ = ["DeferredTextEncoder", "aux_generator", "batch_latents", "check_cache_config", "condition_inputs",
           "flip_rows", "open_cache", "use_cache"]  # fmt: skip

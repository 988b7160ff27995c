"""Feature networks for Frechet distances: a registry from `--features NAME[:ARG]` to an extractor.

| spec | network | features |
|---|---|---|
| `inception[:FILE]` | the FID Inception-v3 (`ptdit.eval.inception`) | 2048-d pool3, images |
| `i3d[:FILE]` | I3D, Kinetics-400 (`ptdit.eval.i3d`) | 400 logits of 16-frame clips, videos |
| `hf:NAME_OR_DIR` | a transformers image encoder, e.g. CLIP vision, DINOv2 (`ptdit.eval.hf_features`) | pooled output |

Without FILE the standard weights file is looked for in torch's hub checkpoint folder. Every extractor maps a
uint8 batch to float64 features and describes itself with the fields of a statistics protocol
(`ptdit.eval.stats.PROTOCOL_FIELDS`). More feature networks register a `FeatureNetwork` in `FEATURES`.

Shape legend: B batch, T frames, H / W rows / columns, D feature size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DEFAULT_FEATURES = {"image": "inception", "video": "i3d"}


@dataclass(frozen=True)
class FeatureExtractor:
    """A feature network with its input preparation.

    Attributes:
        media: "image" (batches (B, H, W, 3)) or "video" (batches (B, T, H, W, 3)), uint8 RGB.
        network: network input -> (B, D) features.
        preprocess: uint8 numpy batch -> network input on `device`.
        info: the protocol fields it fixes: network, layer, weights_hash, feature_dim, preprocess, dtype.
        details: recorded but not compared (e.g. the weights file, whether they are the standard ones).
        device: where the network runs.
    """

    media: str
    network: Callable[[torch.Tensor], torch.Tensor]
    preprocess: Callable[[np.ndarray], torch.Tensor]
    info: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def protocol(self, input_size: tuple[int, ...]) -> dict[str, Any]:
        """The statistics protocol of features of `input_size` ((H, W) or (T, H, W)) inputs."""
        return {**self.info, "media": self.media, "input_size": list(input_size)}

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(B, ...) uint8 -> (B, D) float64 features."""
        return self.network(self.preprocess(batch)).double().cpu().numpy()


def _to_device(device: torch.device, transform: Callable[[torch.Tensor], torch.Tensor]):
    return lambda batch: transform(torch.from_numpy(np.ascontiguousarray(batch)).to(device))


def inception_features(arg: str | None, device: torch.device) -> FeatureExtractor:
    """The FID Inception-v3 from a local file (`arg`; None = the standard file in torch's hub cache)."""
    from ptdit.eval import inception
    from ptdit.eval.weights import default_weights_dir, file_sha256, state_dict_hash

    model = inception.load_fid_inception(arg, device=device)
    path = arg or default_weights_dir() / inception.FID_WEIGHTS_NAME
    info = {
        "network": FEATURES["inception"].network,
        "layer": "pool3",
        "weights_hash": state_dict_hash(model),
        "feature_dim": model.feature_dim,
        "preprocess": inception.PREPROCESS,
        "dtype": "float32",
    }
    standard = file_sha256(path).startswith(inception.FID_WEIGHTS_SHA256_PREFIX)
    details = {"weights_file": str(path), "standard_weights": standard}
    return FeatureExtractor("image", model, _to_device(device, inception.preprocess), info, details, device)


def i3d_features(arg: str | None, device: torch.device) -> FeatureExtractor:
    """I3D (Kinetics-400) from a local file (`arg`; None = `rgb_imagenet.pt` in torch's hub cache)."""
    from ptdit.eval import i3d
    from ptdit.eval.weights import default_weights_dir, state_dict_hash

    model = i3d.load_i3d(arg, device=device)
    info = {
        "network": FEATURES["i3d"].network,
        "layer": "logits",
        "weights_hash": state_dict_hash(model),
        "feature_dim": model.num_classes,
        "preprocess": i3d.PREPROCESS,
        "dtype": "float32",
    }
    details = {"weights_file": str(arg or default_weights_dir() / i3d.I3D_WEIGHTS_NAME)}
    return FeatureExtractor("video", model, _to_device(device, i3d.preprocess), info, details, device)


def hf_features(arg: str | None, device: torch.device) -> FeatureExtractor:
    """A transformers image encoder from a local folder or the hub cache (`hf:NAME_OR_DIR`)."""
    from ptdit.eval.hf_features import load_hf_features

    if not arg:
        raise ValueError("--features hf needs a model: hf:NAME_OR_DIR (e.g. hf:facebook/dinov2-base or a folder)")
    return load_hf_features(arg, device=device)


@dataclass(frozen=True)
class FeatureNetwork:
    """A registry entry: the media the network reads and the factory that loads it.

    Attributes:
        media: "image" or "video".
        build: factory(argument after the colon or None, device) -> FeatureExtractor.
        network: the `network` its extractors record, or None when it depends on the argument (hf).
    """

    media: str
    build: Callable[[str | None, torch.device], FeatureExtractor]
    network: str | None = None


# name -> feature network; `--features NAME[:ARG]` accepts these names.
FEATURES: dict[str, FeatureNetwork] = {
    "inception": FeatureNetwork("image", inception_features, "inception-v3-fid"),
    "i3d": FeatureNetwork("video", i3d_features, "i3d-kinetics400"),
    "hf": FeatureNetwork("image", hf_features),
}


def feature_network(spec: str, *, media: str | None = None) -> FeatureNetwork:
    """The registry entry of a `NAME[:ARG]` spec, checked to read `media` when given.

    Raises:
        ValueError: unknown name, or a network for another media.
    """
    name = spec.partition(":")[0]
    if name not in FEATURES:
        raise ValueError(f"unknown feature network {name!r} in {spec!r}; available: {', '.join(FEATURES)}")
    if media is not None and FEATURES[name].media != media:
        raise ValueError(f"{name} features read {FEATURES[name].media}s, not {media}s")
    return FEATURES[name]


def build_features(spec: str, *, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The extractor of a `NAME[:ARG]` spec, e.g. "inception", "inception:/w/pt_inception.pth", "hf:DIR".

    Raises:
        ValueError: unknown name.
        MissingWeightsError: the weights are not on this machine.
    """
    network = feature_network(spec)
    return network.build(spec.partition(":")[2] or None, torch.device(device))


__all__ = ["DEFAULT_FEATURES", "FEATURES", "FeatureExtractor", "FeatureNetwork", "build_features", "feature_network"]

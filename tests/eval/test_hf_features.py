"""Frechet distances in a transformers encoder's feature space, and CLIPScore / CLIPSIM by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ptdit.encoders.hub import MissingWeightsError
from ptdit.eval.clip_score import load_clip
from ptdit.eval.features import build_features
from ptdit.eval.metrics import clip_similarity, frechet_between
from tests.eval.test_samples import random_images, write_images


@pytest.mark.parametrize("which", ["dinov2", "clip"])
def test_hf_features_are_the_pooled_output(which, tiny_dinov2, tiny_clip):
    from transformers import AutoImageProcessor, CLIPVisionModel, Dinov2Model

    folder = tiny_dinov2 if which == "dinov2" else tiny_clip
    extractor = build_features(f"hf:{folder}")
    images = random_images(3, 40, 36)
    features = extractor(images)
    model = (Dinov2Model if which == "dinov2" else CLIPVisionModel).from_pretrained(folder).eval()
    pixels = AutoImageProcessor.from_pretrained(folder)(images=list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixels).pooler_output.double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert extractor.info["network"] == f"hf:{which}" and extractor.info["feature_dim"] == 32
    assert "ImageProcessor" in extractor.info["preprocess"] and '"crop_size"' in extractor.info["preprocess"]


def test_fd_in_dinov2_space_and_missing_models(tmp_path, tiny_dinov2):
    write_images(tmp_path / "real", random_images(6, seed=1))
    write_images(tmp_path / "fake", random_images(6, seed=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 6 samples of 32-d features: singular covariance, expected here
        from ptdit.eval.metrics import EvalSettings

        record = frechet_between(
            tmp_path / "real", tmp_path / "fake", settings=EvalSettings(features=f"hf:{tiny_dinov2}")
        )
    assert record["features"]["network"] == "hf:dinov2" and np.isfinite(record["scores"]["fid"])
    with pytest.raises(MissingWeightsError) as err:
        build_features(f"hf:{tmp_path / 'no_such_model'}")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs a model"):
        build_features("hf")
    with pytest.raises(ValueError, match="unknown feature network 'vgg'"):
        build_features("vgg:weights.pth")


def _manual_cosine(folder, images, prompts):
    """Cosine of CLIP embeddings computed from the towers and projections directly."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")  # 75 + 2 kept
    pixels = AutoImageProcessor.from_pretrained(folder)(images=list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        text = model.text_projection(model.text_model(**tokens).pooler_output)
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    return torch.nn.functional.cosine_similarity(image, text).double().numpy()


def test_clip_cosine_matches_the_towers(tiny_clip):
    scorer = load_clip(str(tiny_clip))
    images, prompts = random_images(2, 32, 32), ["the cat", "a dog on the mat"]
    np.testing.assert_allclose(scorer.cosine(images, prompts), _manual_cosine(tiny_clip, images, prompts), atol=1e-5)
    assert scorer.max_tokens == 77 and scorer.info["network"] == "hf:clip"


def test_long_prompts_are_cut_with_a_count_or_refused(tiny_clip):
    prompts = ["short", "x" * 200]  # byte-level tokenizer: 200 tokens
    scorer = load_clip(str(tiny_clip))
    assert scorer.count_long(prompts) == 1
    assert np.isfinite(scorer.cosine(random_images(2, 32, 32), prompts)).all()
    with pytest.raises(ValueError, match="1 prompts are longer than CLIP's 77 tokens"):
        load_clip(str(tiny_clip), long_prompts="error").count_long(prompts)


def test_clipscore_and_clipsim_records(tmp_path, tiny_clip):
    images = random_images(3, 32, 32)
    folder = write_images(tmp_path / "images", images)
    prompts = ["the cat", "the dog", "x" * 120]
    for i, prompt in enumerate(prompts):
        (folder / f"{i:03d}.txt").write_text(prompt)
    with pytest.warns(UserWarning, match="1 of 3 prompts are longer"):
        record = clip_similarity(folder, clip=str(tiny_clip))
    expected = 100 * np.maximum(_manual_cosine(tiny_clip, images, prompts), 0).mean()
    assert record["metric"] == "clipscore" and record["prompts"]["truncated"] == 1
    assert record["scores"]["clipscore"] == pytest.approx(expected, abs=1e-3)

    videos = np.random.default_rng(3).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "videos.npz", arr_0=videos)
    (tmp_path / "prompts.txt").write_text("the cat\nthe dog\n")
    record = clip_similarity(
        tmp_path / "videos.npz", clip=str(tiny_clip), prompts_file=tmp_path / "prompts.txt", media="video", num_frames=4
    )
    per_frame = _manual_cosine(tiny_clip, videos.reshape(8, 32, 32, 3), ["the cat"] * 4 + ["the dog"] * 4)
    assert record["scores"]["clipsim"] == pytest.approx(np.maximum(per_frame, 0).reshape(2, 4).mean(), abs=1e-5)


def test_non_clip_model_is_refused(tiny_dinov2):
    with pytest.raises(ValueError, match="not a CLIP model"):
        load_clip(str(tiny_dinov2))

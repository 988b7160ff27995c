"""The released Qihoo-T2I pipeline, converted from the reference's inference config, reproduces the reference run
(tests/fixtures/qihoo_pipeline_tiny: a tiny T5, PT-DiT and CausalVAE run through the reference `QihooPipeline`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ptdit.cli.main import main
from ptdit.sampling.pipeline import GenerationPipeline
from tests.conftest import FIXTURES

pytest.importorskip("transformers")
pytest.importorskip("ftfy")
pytest.importorskip("bs4")

REF = FIXTURES / "qihoo_pipeline_tiny"


@pytest.fixture(scope="module")
def reference() -> dict:
    from safetensors import safe_open

    with safe_open(str(REF / "outputs.safetensors"), "pt") as f:
        meta = f.metadata()
    return {**load_file(str(REF / "outputs.safetensors")), "prompts": json.loads(meta["prompts"])}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("released") / "qihoo-t2i"
    args = ["convert-official", "--config", str(REF / "pipeline_config.json"), "--weights"]
    args += [str(REF / "predictor.safetensors"), "--vae-weights", str(REF / "vae.safetensors"), "--out", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def pipe(converted) -> GenerationPipeline:
    return GenerationPipeline.from_checkpoint(converted, dtype=torch.float32)  # the reference ran in fp32


def test_folder_is_self_contained(converted, pipe):
    from ptdit.encoders import load_vae
    from ptdit.encoders.causalvae import CausalVAE

    config = json.loads((converted / "config.json").read_text())
    assert config["pipeline"]["vae"] == "vae" and config["pipeline"]["text_encoder"] == "text_encoder"
    assert config["pipeline"]["steps"] == 6 and config["pipeline"]["cfg_scale"] == 4.0
    assert config["model"]["reference_compat"] is True  # the weights saw the reference's PE (docs/decisions.md)
    assert isinstance(pipe.vae, CausalVAE) and isinstance(load_vae(converted / "vae"), CausalVAE)
    assert pipe.text_encoder.max_length == 16


def test_token_ids_masks_and_embeddings(pipe, reference):
    ids, mask = pipe.text_encoder.tokenize(pipe.text_encoder.preprocess(reference["prompts"]))
    assert torch.equal(ids, reference["input_ids"]) and torch.equal(mask, reference["attention_mask"])
    cond, uncond = pipe.conditioning(reference["prompts"], None, None)
    torch.testing.assert_close(cond["context"], reference["prompt_embeds"], atol=1e-4, rtol=0)
    torch.testing.assert_close(uncond["context"][0], reference["negative_prompt_embeds"][0], atol=1e-4, rtol=0)
    assert torch.equal(cond["context_mask"].long(), reference["attention_mask"])


def test_final_latents_decoded_image_and_pixels(pipe, reference):
    latents = pipe.sample_latents(reference["prompts"], latents=reference["initial_noise"])
    err = (latents - reference["final_latents"]).abs().max().item()
    assert err < 1e-4, f"final latents differ by {err:.2e}"
    pixels = pipe.decode(latents)
    expected = reference["decoded"].clamp(-1, 1)
    assert (pixels - expected).abs().max().item() < 1e-4
    ours = _reference_uint8(pixels)
    diff = np.abs(ours.astype(int) - reference["images_uint8"].numpy().astype(int))
    assert diff.max() <= 1, f"uint8 images differ by up to {diff.max()} levels"


def test_the_sampler_visits_the_reference_timesteps(pipe, reference):
    seen = []
    model = pipe.load_model()
    original = model.forward

    def spy(x, t, *args, **kwargs):
        seen.append(torch.as_tensor(t).flatten()[0].item())
        return original(x, t, *args, **kwargs)

    model.forward = spy
    try:
        pipe.sample_latents(reference["prompts"], latents=reference["initial_noise"])
    finally:
        model.forward = original
    torch.testing.assert_close(torch.tensor(seen), reference["timesteps"][:, 0], atol=1e-3, rtol=0)


def test_cli_samples_the_reference_images_from_given_noise(converted, reference, tmp_path):
    from PIL import Image

    noise = tmp_path / "noise.safetensors"
    save_file({"latents": reference["initial_noise"].contiguous()}, str(noise))
    out = tmp_path / "samples"
    args = ["sample", "--checkpoint", str(converted), "--latents", str(noise), "--out", str(out)]
    args += ["--dtype", "fp32"]  # the reference ran in fp32; the default (auto) may pick bf16 on this CPU
    for prompt in reference["prompts"]:
        args += ["--prompt", prompt]
    assert main(args) == 0
    for i in range(2):
        (path,) = out.glob(f"{i:03d}-*.png")
        image = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert np.abs(image - reference["images_uint8"][i].numpy().astype(int)).max() <= 1


def test_latents_of_the_wrong_shape_are_refused(pipe, reference):
    with pytest.raises(ValueError, match=r"latents have shape \(2, 4, 1, 4, 4\), expected \(2, 4, 1, 8, 8\)"):
        pipe.sample_latents(reference["prompts"], latents=torch.zeros(2, 4, 1, 4, 4))


def _reference_uint8(pixels: torch.Tensor) -> np.ndarray:
    """The reference's post-processing: clamp, (x + 1) / 2, * 255 + 0.5, clamp, truncate; (B, H, W, 3) of frame 0."""
    x = pixels.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255)
    return x[:, :, 0].permute(0, 2, 3, 1).to(torch.uint8).numpy()


# ------------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing written
# ------------------------------------------------------------------------------------------------------


def _convert(tmp_path, *, config=None, weights=None, vae=None, extra=()):
    out = tmp_path / "out"
    args = ["convert-official", "--config", str(config or REF / "pipeline_config.json"), "--weights"]
    args += [str(weights or REF / "predictor.safetensors"), "--vae-weights", str(vae or REF / "vae.safetensors")]
    return main([*args, *extra, "--out", str(out)]), out


def _config_copy(tmp_path, **changes) -> Path:
    data = json.loads((REF / "pipeline_config.json").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "cfg" / "pipeline_config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return path


def _assert_one_line_error(capsys, out: Path, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ptdit convert-official: error:"), err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()


def test_incomplete_config(tmp_path, capsys):
    code, out = _convert(tmp_path, config=_config_copy(tmp_path, ae=None))
    assert code == 2
    _assert_one_line_error(capsys, out, "lacks the section(s) ['ae']")


def test_text_encoder_not_found(tmp_path, capsys):
    # The copied config's relative "t5" no longer resolves next to it.
    code, out = _convert(tmp_path, config=_config_copy(tmp_path))
    assert code == 2
    _assert_one_line_error(capsys, out, "T5 text encoder not found", "--text-encoder")


def test_text_encoder_of_another_width(tmp_path, capsys):
    from tests.helpers.tiny_encoders import make_tiny_t5

    other = make_tiny_t5(tmp_path / "t5-other")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "d_model": 32}))  # checked before any weight loads
    code, out = _convert(tmp_path, extra=("--text-encoder", str(other)))
    assert code == 2
    _assert_one_line_error(capsys, out, "caption_channels is 64")


def test_vae_with_missing_and_misshaped_keys(tmp_path, capsys):
    state = load_file(str(REF / "vae.safetensors"))
    state.pop(sorted(state)[0])
    key = sorted(state)[5]
    state[key] = torch.zeros(3, 3)
    bad = tmp_path / "vae.safetensors"
    save_file(state, str(bad))
    code, out = _convert(tmp_path, vae=bad)
    assert code == 2
    _assert_one_line_error(capsys, out, "1 missing", "1 mis-shaped")


def test_pickles_with_objects_are_refused(tmp_path, capsys):
    bad = tmp_path / "predictor.pt"
    torch.save({"model": {"weight": torch.zeros(1)}, "args": Path("x")}, bad)
    code, out = _convert(tmp_path, weights=bad)
    assert code == 2
    _assert_one_line_error(capsys, out, "weights_only=True")


def test_nan_weights_are_refused(tmp_path, capsys):
    state = load_file(str(REF / "predictor.safetensors"))
    key = next(k for k in sorted(state) if k.endswith("proj_out.weight"))
    state[key] = torch.full_like(state[key], float("nan"))
    bad = tmp_path / "predictor.safetensors"
    save_file(state, str(bad))
    code, out = _convert(tmp_path, weights=bad)
    assert code == 2
    _assert_one_line_error(capsys, out, "NaN or Inf")


def test_sizes_the_model_cannot_take(converted, tmp_path, capsys):
    """Sizes the window does not tile run padded; 50 px is not a multiple of patch x VAE factor (16) and is
    refused naming the nearest valid sizes."""
    out = tmp_path / "samples"
    code = main(["sample", "--checkpoint", str(converted), "--prompt", "a cat", "--height", "50", "--out", str(out)])
    assert code == 2 and "nearest valid: 48 or 64" in capsys.readouterr().err
    assert not out.exists()

"""Text encoders (ptdit.encoders.text): T5 and CLIP adapters, caption cleaning, with tiny offline models.

Every model is built from a config by tests/helpers/tiny_encoders.py and saved into a temporary folder
(tests/encoders/conftest.py); nothing is downloaded (HF_HUB_OFFLINE=1 while loading).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from tests.helpers.tiny_encoders import TINY_CLIP_DIM, TINY_T5_DIM

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from ptdit.encoders import TextEncoder, clean_caption, load_text_encoder

T5_LENGTH = 16


@pytest.fixture(scope="module")
def t5(folders: dict[str, Path]) -> TextEncoder:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_text_encoder(folders["t5"], max_length=T5_LENGTH)


def test_clean_caption() -> None:
    # The reference cleaner (tests/encoders/test_text_reference.py has the fixture cases) drops "&" and keeps
    # the "." left of a removed "a.png".
    assert clean_caption("  A <b>Red</b>   CAT\n&amp; a dog https://x.org/a.png www.y.com  ") == "a red cat a dog ."
    assert clean_caption("") == ""
    assert clean_caption("plain caption") == "plain caption"


def test_t5_shapes_mask_and_empty_prompt(t5: TextEncoder) -> None:
    assert (t5.kind, t5.dim, t5.max_length, t5.clean_captions) == ("t5", TINY_T5_DIM, T5_LENGTH, True)
    emb, mask = t5.encode(["a cat", ""])
    assert emb.shape == (2, T5_LENGTH, TINY_T5_DIM) and emb.dtype == torch.float32
    assert mask.shape == (2, T5_LENGTH) and mask.dtype == torch.long
    # ByT5: one token per byte plus EOS; the rest is padding (mask 0).
    assert mask.sum(1).tolist() == [len("a cat") + 1, 1]
    assert mask[0, :6].all() and not mask[0, 6:].any()
    ids, _ = t5.tokenize([""])
    assert ids[0, 0].item() == t5.tokenizer.eos_token_id
    assert (ids[0, 1:] == t5.tokenizer.pad_token_id).all()
    assert torch.isfinite(emb).all()


def test_t5_mask_is_used_in_encoder(folders: dict[str, Path], t5: TextEncoder) -> None:
    # With the mask applied inside T5, more padding must not change the real tokens' features.
    longer = load_text_encoder(folders["t5"], max_length=2 * T5_LENGTH)
    emb_a, mask_a = t5.encode(["a small dog"])
    emb_b, _ = longer.encode(["a small dog"])
    n = int(mask_a.sum())
    torch.testing.assert_close(emb_a[:, :n], emb_b[:, :n], atol=1e-5, rtol=1e-5)


def test_t5_truncation_warns_with_dropped_count(t5: TextEncoder) -> None:
    long_prompt = "x" * 30  # 30 bytes + EOS = 31 tokens -> 15 dropped at length 16
    with pytest.warns(UserWarning, match=r"1 of 2 prompts .* max_length=16 .*prompt 1: 15") as record:
        emb, mask = t5.encode(["ok", long_prompt])
    assert len(record) == 1
    assert emb.shape == (2, T5_LENGTH, TINY_T5_DIM) and mask[1].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t5.encode(["x" * (T5_LENGTH - 1)])  # exactly max_length tokens with EOS: no warning


def test_t5_caption_cleaning_flag(folders: dict[str, Path], t5: TextEncoder) -> None:
    raw = "A <i>Red</i> CAT https://example.com/cat"
    emb_clean, _ = t5.encode([raw])
    emb_ref, _ = t5.encode(["a red cat"])
    torch.testing.assert_close(emb_clean, emb_ref, atol=0, rtol=0)
    plain = load_text_encoder(folders["t5"], max_length=T5_LENGTH, clean_captions=False)
    assert not torch.equal(plain.encode(["A CAT"])[0], t5.encode(["A CAT"])[0])


def test_t5_reload_gives_identical_outputs(folders: dict[str, Path], t5: TextEncoder) -> None:
    from transformers import T5EncoderModel

    again = load_text_encoder(folders["t5"], kind="t5", max_length=T5_LENGTH)
    prompts = ["A Photo", "", "two dogs"]
    torch.testing.assert_close(again.encode(prompts), t5.encode(prompts), atol=0, rtol=0)
    ids, mask = t5.tokenize([clean_caption(p) for p in prompts])
    direct = T5EncoderModel.from_pretrained(folders["t5"]).eval()
    with torch.no_grad():
        ref = direct(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(t5.encode(prompts)[0], ref, atol=0, rtol=0)


def test_t5_bf16_weights_return_float32(folders: dict[str, Path]) -> None:
    enc = load_text_encoder(folders["t5"], max_length=8, dtype=torch.bfloat16)
    assert enc.dtype == torch.bfloat16
    emb, _ = enc.encode(["a"])
    assert emb.dtype == torch.float32 and emb.shape == (1, 8, TINY_T5_DIM)


def test_clip_shapes_and_mask(folders: dict[str, Path]) -> None:
    clip = load_text_encoder(folders["clip"])
    assert (clip.kind, clip.dim, clip.max_length, clip.clean_captions) == ("clip", TINY_CLIP_DIM, 77, False)
    emb, mask = clip.encode(["the cat on the dog", ""])
    assert emb.shape == (2, 77, TINY_CLIP_DIM) and emb.dtype == torch.float32
    # BOS + 5 word tokens + EOS; the empty prompt is BOS + EOS.
    assert mask.sum(1).tolist() == [7, 2]
    assert not mask[:, 7:].any()
    with pytest.warns(UserWarning, match="prompts exceed the clip max_length=77"):
        clip.encode(["the cat " * 60])
    with pytest.raises(ValueError, match="position limit 77"):
        load_text_encoder(folders["clip"], max_length=100)


def test_text_encoder_kind_detection_errors(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model_type 't5'.*kind='clip'"):
        load_text_encoder(folders["t5"], kind="clip")
    with pytest.raises(ValueError, match="kind must be one of"):
        load_text_encoder(folders["t5"], kind="bert")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_text_encoder(tmp_path)


def test_text_encoder_rejects_bad_prompts(t5: TextEncoder) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        t5.encode("a cat")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="every prompt must be a str"):
        t5.encode(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="prompts is empty"):
        t5.encode([])

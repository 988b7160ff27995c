"""The released pipeline's text path: caption cleaning, tokenization and T5 encoding (SPEC section 16).

Fixtures (copied from the shared fixture folder, read relative to this file):

* `fixtures/caption_cleaning.json`: 40 raw prompts and the text the reference (MindSpeed-MM
  `TextProcesser.text_preprocessing`, ftfy 6.3.1, beautifulsoup4 4.15.0) feeds its tokenizer.
* `fixtures/qihoo_pipeline_tiny/`: one run of the reference `QihooPipeline` with a tiny T5 (`t5/`: a
  sentencepiece tokenizer saved by transformers' T5Tokenizer plus a random T5EncoderModel), 16 tokens; its
  `outputs.safetensors` holds the token ids, masks and T5 embeddings of the prompts and the negative prompt.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ptdit.encoders import MissingWeightsError, TextEncoder, load_released_text_encoder, load_text_encoder
from ptdit.encoders.cleaning import clean_caption_once
from ptdit.encoders.text import clean_caption, normalize_negative_prompt
from tests.conftest import FIXTURES

CAPTIONS = json.loads((FIXTURES / "caption_cleaning.json").read_text(encoding="utf-8"))["cases"]
PIPELINE = FIXTURES / "qihoo_pipeline_tiny"
T5_FOLDER = PIPELINE / "t5"
FIXTURE_LENGTH = 16  # the fixture's model_max_length (the release uses 200)
MODEL_FILES = ("config.json", "model.safetensors")
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")

HAVE_CLEANING = all(importlib.util.find_spec(m) is not None for m in ("ftfy", "bs4"))
needs_cleaning = pytest.mark.skipif(
    not HAVE_CLEANING, reason="caption cleaning needs ftfy and beautifulsoup4 (pip install ptdit[hub])"
)
needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="needs transformers (pip install ptdit[hub])"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    """Tensors and metadata of the reference pipeline run."""
    from safetensors import safe_open

    with safe_open(str(PIPELINE / "outputs.safetensors"), "pt") as handle:
        out: dict[str, object] = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        meta = handle.metadata()
    out["prompts"] = json.loads(meta["prompts"])
    out["cleaned_prompts"] = json.loads(meta["cleaned_prompts"])
    out["negative_prompt"] = meta["negative_prompt"]
    assert int(meta["max_length"]) == FIXTURE_LENGTH
    return out


@pytest.fixture(scope="module")
def t5() -> TextEncoder:
    if not (HAVE_CLEANING and importlib.util.find_spec("transformers")):
        pytest.skip("needs transformers, ftfy and beautifulsoup4 (pip install ptdit[hub])")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_text_encoder(T5_FOLDER, max_length=FIXTURE_LENGTH)


def _pipeline_folder(root: Path, *, encoder: bool = True, tokenizer: bool = True) -> Path:
    """The fixture's T5 laid out as EasyAnimateV2 ships it: text_encoder/ and tokenizer/."""
    for present, sub, files in ((encoder, "text_encoder", MODEL_FILES), (tokenizer, "tokenizer", TOKENIZER_FILES)):
        if present:
            (root / sub).mkdir(parents=True)
            for name in files:
                shutil.copy(T5_FOLDER / name, root / sub / name)
    return root


# ------------------------------------------------------------------------------------------------------
# Caption cleaning
# ------------------------------------------------------------------------------------------------------


@needs_cleaning
@pytest.mark.parametrize("case", CAPTIONS, ids=[f"case{i:02d}" for i in range(len(CAPTIONS))])
def test_clean_caption_matches_reference(case: dict[str, str]) -> None:
    assert clean_caption(case["raw"]) == case["cleaned"]


# Further inputs, outputs checked against the reference function: quirks of its rule order.
REFERENCE_EXTRA = [
    ("a%2520b", "a b"),  # the second pass matters: "%25" -> "%", then "%20" -> " "
    ("&lt;p&gt;text&lt;/p&gt;", "text< p>"),  # entities are unescaped after the HTML pass, tags go on pass 2
    ("<<b>b>bold</b>", "bold"),
    ("photo 12:45 http://x.com", "photo 1"),  # the trailing-time rule fires on the space a URL left
    ("#1234 hi", "1234 hi"),  # 1-3 and 5+ digit hash numbers are removed, 4-digit ones are not
    ("a.b.c", "a. b. c"),
    ("Free\u00a0Shipping now", "now"),
    ("shop-example-com-the-best", "shop example com the best"),  # more than three hyphens
    ("'a cat'.", "a cat'."),
    ("abc123def456", ""),
    ("&amp;lt;b&amp;gt;bold", "lt;b gt;bold"),
    ("1,000 people", "1,000 people"),
    ("", ""),
]


@needs_cleaning
@pytest.mark.parametrize(("raw", "cleaned"), REFERENCE_EXTRA)
def test_clean_caption_reference_quirks(raw: str, cleaned: str) -> None:
    assert clean_caption(raw) == cleaned


@needs_cleaning
def test_clean_caption_is_two_passes() -> None:
    for raw in [c["raw"] for c in CAPTIONS] + [raw for raw, _ in REFERENCE_EXTRA]:
        assert clean_caption(raw) == clean_caption_once(clean_caption_once(raw)).strip()
    assert clean_caption_once("a%2520b") == "a%20b"


@needs_cleaning
def test_clean_caption_markup_the_parser_rejects() -> None:
    # html.parser rejects "<![{"; the reference raises bs4's ParserRejectedMarkup, we a ValueError naming it.
    with pytest.raises(ValueError, match=r"cannot clean caption '<!\[\{x'.*html.parser"):
        clean_caption("<![{x")


def test_negative_prompt_is_only_lowercased_and_stripped() -> None:
    assert normalize_negative_prompt("") == ""
    assert normalize_negative_prompt("  Blurry, LOW quality #1, <b>x</b> ") == "blurry, low quality #1, <b>x</b>"


@pytest.mark.parametrize("module", ["ftfy", "bs4"])
def test_missing_cleaning_dependency_names_the_extra(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    package = "ftfy" if module == "ftfy" else "beautifulsoup4"
    with pytest.raises(ImportError, match=rf"needs {package}.*pip install ptdit\[hub\]"):
        clean_caption("a cat")
    assert normalize_negative_prompt(" A ") == "a"  # needs neither


@needs_transformers
def test_loading_with_cleaning_checks_dependencies_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ftfy", None)
    with pytest.raises(ImportError, match=r"pip install ptdit\[hub\]"):
        load_text_encoder(T5_FOLDER, max_length=FIXTURE_LENGTH)
    plain = load_text_encoder(T5_FOLDER, max_length=FIXTURE_LENGTH, clean_captions=False)
    assert plain.preprocess(["A Cat"]) == ["A Cat"]


# ------------------------------------------------------------------------------------------------------
# Tokenization and T5: parity with the reference pipeline run
# ------------------------------------------------------------------------------------------------------


def test_prompts_match_reference_preprocessing(t5: TextEncoder, reference: dict) -> None:
    assert t5.preprocess(reference["prompts"]) == reference["cleaned_prompts"]
    negatives = [reference["negative_prompt"]] * 2
    assert t5.preprocess(negatives, negative=True) == [""] * 2


def test_token_ids_and_masks_match_reference(t5: TextEncoder, reference: dict) -> None:
    with pytest.warns(UserWarning, match="prompt 0: 12"):  # the reference truncates the first prompt too
        ids, mask = t5.tokenize(t5.preprocess(reference["prompts"]))
    assert torch.equal(ids, reference["input_ids"]) and torch.equal(mask, reference["attention_mask"])
    ids, mask = t5.tokenize(t5.preprocess([reference["negative_prompt"]] * 2, negative=True))
    assert torch.equal(ids, reference["negative_input_ids"])
    assert torch.equal(mask, reference["negative_attention_mask"])


def test_t5_embeddings_match_reference(t5: TextEncoder, reference: dict) -> None:
    assert t5.dtype == torch.float32  # the release runs T5 in fp32
    with pytest.warns(UserWarning, match="truncated"):
        emb, mask = t5.encode(reference["prompts"])
    torch.testing.assert_close(emb, reference["prompt_embeds"], atol=1e-4, rtol=0)
    assert torch.equal(mask, reference["attention_mask"])
    emb, mask = t5.encode([reference["negative_prompt"]] * 2, negative=True)
    torch.testing.assert_close(emb, reference["negative_prompt_embeds"], atol=1e-4, rtol=0)
    assert torch.equal(mask, reference["negative_attention_mask"])


def test_pipeline_uses_mask_as_context_mask_and_negative_normalisation(t5: TextEncoder) -> None:
    # Training and sampling both take their conditions from the recipe's text strategy.
    from ptdit.recipe import TextConditioning

    text = TextConditioning(t5)
    cond, uncond = text.encode(["A <b>Red</b> apple"], "cpu"), text.null("cpu", "  A Wooden TABLE #1 ")
    emb, mask = t5.encode(["a red apple"])
    assert torch.equal(cond["context"], emb) and torch.equal(cond["context_mask"], mask)
    neg_emb, neg_mask = t5.encode(["a wooden table #1"], negative=True)  # not cleaned: "#1" stays
    assert torch.equal(uncond["context"], neg_emb) and torch.equal(uncond["context_mask"], neg_mask)
    assert not torch.equal(neg_emb, t5.encode(["a wooden table #1"])[0])  # cleaning would drop "#1"


# ------------------------------------------------------------------------------------------------------
# The released layout (EasyAnimateV2 text_encoder/ + tokenizer/), 200 tokens
# ------------------------------------------------------------------------------------------------------


@needs_transformers
@needs_cleaning
def test_released_text_encoder_from_pipeline_folder(tmp_path: Path, t5: TextEncoder, reference: dict) -> None:
    released = load_released_text_encoder(_pipeline_folder(tmp_path / "pretrain_models"))
    assert (released.kind, released.max_length, released.clean_captions) == ("t5", 200, True)
    assert released.dtype == torch.float32
    emb, mask = released.encode(reference["prompts"])  # 200 tokens: nothing is truncated
    assert emb.shape == (2, 200, t5.dim) and mask.shape == (2, 200)
    ids, _ = released.tokenize(reference["cleaned_prompts"])
    ref_ids, ref_mask = reference["input_ids"], reference["attention_mask"]
    assert torch.equal(ids[1, :FIXTURE_LENGTH], ref_ids[1]) and not ids[1, FIXTURE_LENGTH:].any()
    assert torch.equal(ids[0, : FIXTURE_LENGTH - 1], ref_ids[0, :-1])  # the reference cut prompt 0 at 16
    assert mask.sum(1).tolist() == [28, int(ref_mask[1].sum())]
    # The mask is applied inside T5: 184 more padding tokens leave the real tokens' features unchanged.
    n = int(ref_mask[1].sum())
    torch.testing.assert_close(emb[1, :n], reference["prompt_embeds"][1, :n], atol=1e-5, rtol=0)
    neg_emb, neg_mask = released.encode([""], negative=True)
    assert neg_mask.sum().item() == 1  # EOS, then padding
    torch.testing.assert_close(neg_emb[0, :1], reference["negative_prompt_embeds"][0, :1], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------------
# Missing folders and files: one line naming what is missing and how to supply it
# ------------------------------------------------------------------------------------------------------


def _assert_one_line_error(fn, *needles: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(MissingWeightsError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "hf download" in message and "--local-dir" in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@needs_transformers
def test_missing_tokenizer_folder(tmp_path: Path) -> None:
    root = _pipeline_folder(tmp_path / "pretrain_models", tokenizer=False)
    _assert_one_line_error(lambda: load_text_encoder(root), f"missing the tokenizer folder {str(root / 'tokenizer')!r}")


@needs_transformers
def test_missing_encoder_folder(tmp_path: Path) -> None:
    root = _pipeline_folder(tmp_path / "pretrain_models", encoder=False)
    _assert_one_line_error(
        lambda: load_text_encoder(root), f"missing the encoder folder {str(root / 'text_encoder')!r}"
    )


@needs_transformers
def test_missing_tokenizer_files_and_weights(tmp_path: Path) -> None:
    # Without this check transformers builds an empty T5 tokenizer that turns every word into <unk>.
    folder = tmp_path / "t5"
    folder.mkdir()
    shutil.copy(T5_FOLDER / "config.json", folder / "config.json")
    _assert_one_line_error(lambda: load_text_encoder(folder), "missing model weights", "tokenizer files")
    shutil.copy(T5_FOLDER / "model.safetensors", folder / "model.safetensors")
    message = _assert_one_line_error(lambda: load_text_encoder(folder), "tokenizer files", str(folder))
    assert "model weights" not in message

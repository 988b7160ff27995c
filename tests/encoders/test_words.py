"""The built-in word encoder: position codes, the optional n-gram context, saving and loading."""

from __future__ import annotations

import json

import pytest
import torch

from ptdit.data import VOCABULARY
from ptdit.encoders import load_text_encoder
from ptdit.encoders.fingerprint import encoder_fingerprint
from ptdit.encoders.words import WordTextEncoder

PROMPTS = ["a red circle at the left and a blue square at the right", "a blue square"]


def test_without_context_a_token_depends_only_on_its_word_and_position():
    enc = WordTextEncoder(VOCABULARY, dim=16, max_length=16)
    a, _ = enc(["a red circle at the left"])
    b, _ = enc(["a red square at the left"])
    changed = (a - b).abs().sum(-1)[0] > 0
    assert changed.tolist() == [i == 2 for i in range(16)]


@pytest.mark.parametrize("context", [1, 3])
def test_context_spreads_a_word_to_exactly_its_k_neighbours(context):
    enc = WordTextEncoder(VOCABULARY, dim=16, max_length=16, context=context)
    a, mask = enc(["a red circle at the left"])
    b, _ = enc(["a red square at the left"])
    changed = (a - b).abs().sum(-1)[0] > 0
    # word 2 changed: tokens 2 - K .. 2 + K see it (clipped at the start), padding stays zero
    expected = [abs(i - 2) <= context for i in range(16)]
    assert changed.tolist() == expected
    assert torch.all(a[0, mask[0] == 0] == 0)


def test_context_keeps_the_word_embeddings_of_the_seed():
    plain = WordTextEncoder(VOCABULARY, dim=16, max_length=8)
    ctx = WordTextEncoder(VOCABULARY, dim=16, max_length=8, context=2)
    assert torch.equal(plain.embeddings, ctx.embeddings)
    assert ctx.offsets() == [-2, -1, 1, 2]
    assert torch.all(ctx.context_embeddings[:, 0] == 0)  # padding adds nothing


def test_context_matches_an_explicit_sum_over_neighbours():
    enc = WordTextEncoder(VOCABULARY, dim=8, max_length=16, context=2)
    feats, mask = enc(PROMPTS)
    ids, _ = enc.tokenize(PROMPTS)
    for b in range(len(PROMPTS)):
        for i in range(16):
            want = enc.embeddings[ids[b, i]] + enc.positions[i] * mask[b, i]
            for table, k in zip(enc.context_embeddings, enc.offsets(), strict=True):
                if 0 <= i + k < 16:
                    want = want + table[ids[b, i + k]]
            torch.testing.assert_close(feats[b, i], want * mask[b, i])


def test_saved_context_encoder_loads_identically_and_fingerprints_differ(tmp_path):
    enc = WordTextEncoder(VOCABULARY, dim=16, max_length=20, context=2)
    enc.save(tmp_path / "enc")
    loaded = load_text_encoder(str(tmp_path / "enc"))
    assert loaded.context == 2
    torch.testing.assert_close(loaded(PROMPTS)[0], enc(PROMPTS)[0], rtol=0, atol=0)
    plain = WordTextEncoder(VOCABULARY, dim=16, max_length=20)
    assert encoder_fingerprint(enc) != encoder_fingerprint(plain)
    assert encoder_fingerprint(loaded) == encoder_fingerprint(enc)


def test_folder_claiming_context_without_tables_is_refused(tmp_path):
    WordTextEncoder(VOCABULARY, dim=16, max_length=20).save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "context": 2}))
    with pytest.raises(ValueError, match="no context_embeddings"):
        load_text_encoder(str(tmp_path))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_context_is_refused(bad):
    with pytest.raises(ValueError, match="context must be a non-negative int"):
        WordTextEncoder(VOCABULARY, dim=16, context=bad)


def test_training_config_builds_the_context_encoder_and_refuses_context_for_other_encoders(tmp_path):
    from ptdit.cli.demo import config_path
    from ptdit.train.config import load_train_config
    from ptdit.train.setup import build_text_encoder

    cfg = load_train_config(config_path("demo-t2i.yaml"), ["pipeline.text_context=2"])
    encoder, folder, pipeline = build_text_encoder(cfg, cfg.model_config(), tmp_path, True)
    assert encoder.context == 2 and pipeline["text_context"] == 2
    assert load_text_encoder(str(folder)).context == 2
    cfg = load_train_config(config_path("demo-t2i.yaml"), ["pipeline.text_context=2", "pipeline.text_encoder=t5"])
    with pytest.raises(ValueError, match="text_context applies to the built-in word encoder only"):
        build_text_encoder(cfg, cfg.model_config(), tmp_path, True)

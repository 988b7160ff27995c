"""The conditioning decision: task -> kind -> encode / null / drop, shared by the trainer and the pipeline."""

from __future__ import annotations

import pytest
import torch

from ptdit.recipe import ClassConditioning, NoConditioning, TextConditioning, conditioning_for, get_task
from ptdit.recipe.tasks import TASKS


class _Encoder:
    """A deterministic stand-in text encoder: (B, 3, 2) embeddings and (B, 3) masks from the prompt lengths."""

    dim = 2

    def encode(self, prompts, negative=False):
        emb = torch.stack([torch.full((3, 2), float(len(p))) for p in prompts])
        mask = torch.stack([torch.tensor([1, int(len(p) > 0), 0]) for p in prompts])
        return emb, mask


def test_tasks_choose_the_strategy():
    assert isinstance(conditioning_for("t2i", text_encoder=_Encoder()), TextConditioning)
    assert isinstance(conditioning_for("t2v", text_encoder=_Encoder()), TextConditioning)
    assert isinstance(conditioning_for("t2mv", text_encoder=_Encoder()), TextConditioning)
    assert isinstance(conditioning_for("class", num_classes=3), ClassConditioning)
    assert isinstance(conditioning_for("uncond"), NoConditioning)
    assert {t.conditioning for t in TASKS.values()} == {"text", "class", "none"}
    with pytest.raises(ValueError, match="unknown task"):
        get_task("t2x")


def test_text_drop_replaces_rows_by_the_null_prompt():
    text = TextConditioning(_Encoder())
    cond = text.encode(["ab", "abcd", "abc"], "cpu")
    null = text.null("cpu")
    dropped = text.drop(cond, torch.tensor([False, True, False]), null)
    torch.testing.assert_close(dropped["context"][1], null["context"][0])
    torch.testing.assert_close(dropped["context_mask"][1], null["context_mask"][0])
    torch.testing.assert_close(dropped["context"][[0, 2]], cond["context"][[0, 2]])
    assert text.null("cpu", "blurry")["context"][0, 0, 0] == len("blurry")


def test_class_drop_uses_the_null_class_and_silences_the_embedder_dropout():
    labels = ClassConditioning(3)
    cond = labels.encode([0, 2, 1], "cpu")
    dropped = labels.drop(cond, torch.tensor([True, False, False]), labels.null("cpu"))
    assert dropped["class_labels"].tolist() == [3, 2, 1]
    assert dropped["force_drop_mask"].tolist() == [True, False, False]


def test_class_drop_equals_the_embedders_own_mechanism():
    """Replacing labels by the null class gives exactly the embedding the label embedder's mask would give."""
    from ptdit.nn.embeddings import LabelEmbedder

    torch.manual_seed(0)
    embedder = LabelEmbedder(3, 8, dropout_prob=0.5).train()
    labels, drop = torch.tensor([0, 2, 1]), torch.tensor([True, False, True])
    strategy = ClassConditioning(3)
    ours = strategy.drop(strategy.encode(labels, "cpu"), drop, strategy.null("cpu"))
    torch.testing.assert_close(embedder(ours["class_labels"], ours["force_drop_mask"]), embedder(labels, drop))


def test_bad_labels_and_missing_inputs_are_named():
    with pytest.raises(ValueError, match=r"\[5\] are outside \[0, 3\)"):
        ClassConditioning(3).encode([0, 5], "cpu")
    with pytest.raises(ValueError, match="at least one prompt"):
        TextConditioning(_Encoder()).encode([], "cpu")
    with pytest.raises(ValueError, match="needs a text encoder"):
        conditioning_for("t2i")


def test_unconditional_passes_nothing():
    none = NoConditioning()
    assert none.encode([None], "cpu") == {} and none.null("cpu") == {}
    assert none.drop({}, torch.tensor([True]), {}) == {}

"""Optimizer parameter groups and the learning-rate schedule (ptdit.train.optim)."""

from __future__ import annotations

import pytest

import ptdit
from ptdit.train.optim import lr_factor, param_groups
from tests.helpers.train import tiny_train_config


def test_param_groups_skip_decay_on_norms_biases_embeddings_tables():
    model = ptdit.build_model("PT-DiT/Tiny", conditioning="class", num_classes=3)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "label_embedder.embedding_table.weight" in no_decay_names
    assert "transformer_blocks.0.scale_shift_table" in no_decay_names and "proj_out.bias" in no_decay_names
    assert all(names[id(p)].endswith("weight") for p in decay["params"]) and decay["weight_decay"] == 0.05


def test_lr_schedule_warmup_then_cosine():
    cfg = tiny_train_config("optim.schedule=cosine", "optim.warmup_steps=10", "optim.min_lr_ratio=0.1").optim
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1) and lr_factor(9, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.55) and lr_factor(110, cfg, 110) == pytest.approx(0.1)

"""Shared fixtures and test-wide settings: offline hub, one CPU thread, fixed seeds."""

from __future__ import annotations

import os
from pathlib import Path

# No test may reach the network: an accidental hub call fails fast instead of hanging (ENVIRONMENT.md).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

from tests.helpers.tiny_encoders import make_tiny_t5

# Parity fixtures live in the repository (tests/fixtures/README.md says where each file comes from), so every
# clone runs every test: a missing file is an error, never a skip.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Tiny test models run ~10x faster on one thread than on two here (OpenMP synchronisation dominates).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The folder of the committed parity fixtures (tests/fixtures); tests read fixture files only through it."""
    return FIXTURES


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """A tiny T5 text encoder folder (tests/helpers/tiny_encoders.py), built once per test module."""
    return make_tiny_t5(tmp_path_factory.mktemp("t5"))

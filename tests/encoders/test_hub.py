"""Lazy imports, optional-dependency errors and missing weights (ptdit.encoders.errors): fast, clear, one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from ptdit.encoders import MissingWeightsError, load_text_encoder, load_vae


def test_import_is_lazy() -> None:
    code = (
        "import sys, ptdit.encoders as e; "
        "heavy = [m for m in ('transformers', 'diffusers') if m in sys.modules]; "
        "assert not heavy, heavy; e.load_vae; assert 'diffusers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _assert_fast_clear_error(fn, name: str) -> MissingWeightsError:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        fn()
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert name in message and "--local-dir" in message and "\n" not in message
    assert isinstance(info.value, FileNotFoundError)
    return info.value


def test_missing_local_folder(tmp_path: Path) -> None:
    missing = str(tmp_path / "no_such_model")
    _assert_fast_clear_error(lambda: load_text_encoder(missing), missing)
    _assert_fast_clear_error(lambda: load_vae(missing), missing)


def test_unknown_hub_id_offline() -> None:
    _assert_fast_clear_error(lambda: load_text_encoder("ptdit-tests/no-such-t5"), "ptdit-tests/no-such-t5")
    err = _assert_fast_clear_error(lambda: load_vae("ptdit-tests/no-such-vae"), "ptdit-tests/no-such-vae")
    assert "HF_HUB_OFFLINE" in str(err)
    # Aliases resolve to the hub id they stand for, and the error names it.
    _assert_fast_clear_error(lambda: load_text_encoder("t5-xxl"), "google/t5-v1_1-xxl")
    err = _assert_fast_clear_error(lambda: load_vae("wan2.1"), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert "--include 'vae/*'" in str(err)


def test_folder_without_weights(folders: dict[str, Path], tmp_path: Path) -> None:
    _assert_fast_clear_error(lambda: load_vae(tmp_path), str(tmp_path))  # no config.json at all
    for kind in ("t5", "vae"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "config.json").write_text((folders[kind] / "config.json").read_text())
        loader = load_text_encoder if kind == "t5" else load_vae
        err = _assert_fast_clear_error(lambda loader=loader, folder=folder: loader(folder), str(folder))
        # Text encoders are checked for weights and tokenizer files before loading; VAEs fail in diffusers.
        assert ("missing model weights" if kind == "t5" else "loading failed") in str(err)


def test_unreachable_hub_fails_fast_without_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Online mode, but the endpoint refuses connections: the probe must short-cut huggingface_hub's retries.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    err = _assert_fast_clear_error(lambda: load_vae("ptdit-tests/no-such-vae"), "ptdit-tests/no-such-vae")
    assert "unreachable" in str(err)

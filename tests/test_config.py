"""Model configs (ptdit.config): validation errors, JSON round trip, unknown keys."""

from __future__ import annotations

import json

import pytest

from ptdit.config import config_from_dict
from ptdit.models.registry import build_model
from tests.helpers.models import tiny_config


def test_config_validation_errors():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        tiny_config(dim=32, num_heads=3)
    with pytest.raises(ValueError, match="proxy_window"):
        tiny_config(proxy_window=(1, 3, 3))
    with pytest.raises(ValueError, match="injection_grid"):
        tiny_config(injection="linear")
    with pytest.raises(ValueError, match="proxy_mode"):
        tiny_config(proxy_mode="median")
    with pytest.raises(ValueError, match="window_size"):
        tiny_config(window_size=(1, 0, 4))


def test_config_json_roundtrip_and_unknown_key():
    cfg = tiny_config(proxy_window=(1, 2, 2), window_size=(1, 4, 4))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert config_from_dict(data) == cfg
    with pytest.raises(ValueError, match=r"unknown ptdit config keys \['dpeth'\]"):
        config_from_dict({**data, "dpeth": 3})
    with pytest.raises(ValueError, match="arch"):
        config_from_dict({"dim": 3})
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("PT-DiT/XXL")

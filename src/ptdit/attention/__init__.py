"""Attention: one entry point with selectable backends, window geometry, proxy tokens, modules."""

from ptdit.attention.backends import AttentionBackend, use_attention_backend
from ptdit.attention.functional import attention, attention_reference
from ptdit.attention.modules import Attention, masked_window_attention
from ptdit.attention.proxy import pool_proxy_tokens
from ptdit.attention.window import (
    WindowLayout,
    shift_windows,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "Attention",
    "AttentionBackend",
    "WindowLayout",
    "attention",
    "attention_reference",
    "masked_window_attention",
    "pool_proxy_tokens",
    "shift_windows",
    "shifted_window_mask",
    "use_attention_backend",
    "window_partition",
    "window_reverse",
]

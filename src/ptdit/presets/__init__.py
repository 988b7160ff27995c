"""Named configurations."""

from ptdit.presets.models import MODEL_PRESETS, get_preset

__all__ = ["MODEL_PRESETS", "get_preset"]

"""Optional dependencies: the one way ptdit imports a package that the core install does not have.

`require("av", "video")` imports or raises an ImportError naming the extra to install; `optional(...)` returns
None for nice-to-have packages (matplotlib for plots, TensorBoard) so the caller can skip that output.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def require(module: str, extra: str, *, purpose: str = "this feature") -> ModuleType:
    """Imports `module`, or raises ImportError: "`av` is required for writing MP4; pip install 'ptdit[video]'".

    Args:
        module: module to import, e.g. "transformers".
        extra: the ptdit extra that installs it, e.g. "hub".
        purpose: what needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"`{module}` is required for {purpose}; install it with: pip install 'ptdit[{extra}]'"
        ) from exc


def optional(module: str) -> ModuleType | None:
    """Imports `module`, or returns None when it (or one of its own dependencies) is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def available(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


__all__ = ["available", "optional", "require"]

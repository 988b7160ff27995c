"""The one helper for optional imports."""

from __future__ import annotations

import pytest

from ptdit.optional import available, optional, require


def test_require_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pip install 'ptdit\[video\]'"):
        require("ptdit_no_such_package_xyz", "video")


def test_require_says_what_needs_it() -> None:
    with pytest.raises(ImportError, match="required for writing MP4"):
        require("ptdit_no_such_package_xyz", "video", purpose="writing MP4")


def test_optional_and_available() -> None:
    assert optional("ptdit_no_such_package_xyz") is None
    assert optional("json") is not None
    assert available("json") and not available("ptdit_no_such_package_xyz")

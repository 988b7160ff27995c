"""Finding pretrained weights: local folders, hub ids and the hub cache, with one-line errors.

Pretrained weights are optional in ptdit, and the machines it is developed on have no route to the
Hugging Face hub. Loading therefore never waits on the network when it cannot help: a local folder is
used as is, a hub id is looked up in the local cache only when `HF_HUB_OFFLINE` (or
`TRANSFORMERS_OFFLINE`) is set or the hub host does not answer a quick TCP probe, and every failure
becomes one `MissingWeightsError` line that says how to point the library at a local copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptdit.optional import require

__all__ = [
    "MissingWeightsError",
    "ResolvedModel",
    "hub_offline",
    "missing_weights_error",
    "read_model_config",
    "resolve_model",
]

_TRUE_VALUES = {"1", "true", "yes", "on"}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights (or their config) are neither on disk nor obtainable from the hub."""


def hub_offline() -> bool:
    """True when the environment forbids hub access (read at call time, unlike huggingface_hub's constant)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE_VALUES for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _missing_message(name: str, what: str, reason: str, subfolder: str | None, *, is_path: bool = False) -> str:
    """One-line explanation plus how to point ptdit at a local copy."""
    sub = f" (subfolder {subfolder!r})" if subfolder else ""
    if is_path:
        fix = (
            "Pass a folder holding config.json and the weights, e.g. one made on a machine with internet access "
            "by `hf download HUB_ID --local-dir DIR` (`huggingface-cli download` in older huggingface_hub)."
        )
    else:
        include = f" --include '{subfolder}/*'" if subfolder else ""
        fix = (
            f"Download it on a machine with internet access with `hf download {name}{include} --local-dir DIR` "
            f"(`huggingface-cli download` in older huggingface_hub), copy DIR here and pass DIR instead of {name!r}."
        )
    return f"cannot load {what} {name!r}{sub}: {reason}. {fix}"


def _looks_like_path(name: str) -> bool:
    """Heuristic for names that can only be file-system paths (hub ids are 'name' or 'org/name')."""
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\"))
        or name.count("/") > 1
        or "\\" in name
        or name.endswith(("/", ".json", ".safetensors", ".bin"))
    )


@dataclass(frozen=True)
class ResolvedModel:
    """Where and how to load a model: arguments for `from_pretrained` plus its parsed `config.json`.

    Attributes:
        source: a local folder or a hub id, the first argument of `from_pretrained`.
        subfolder: subfolder inside `source` (None for the root).
        local_files_only: True when the hub must not be contacted.
        config: the parsed `config.json` of the model.
    """

    source: str
    subfolder: str | None
    local_files_only: bool
    config: dict[str, Any]

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every `from_pretrained` call for this model."""
        kwargs: dict[str, Any] = {"local_files_only": self.local_files_only}
        if self.subfolder:
            kwargs["subfolder"] = self.subfolder
        return kwargs


def read_model_config(folder: str | Path) -> dict[str, Any]:
    """Parse `folder/config.json`.

    Args:
        folder: a model folder.

    Returns:
        The config as a dict.

    Raises:
        MissingWeightsError: if the folder has no `config.json`.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise MissingWeightsError(f"{str(folder)!r} has no config.json, so it is not a saved model folder")
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def resolve_model(name_or_path: str | os.PathLike[str], *, what: str, subfolder: str | None = None) -> ResolvedModel:
    """Find a model locally (folder first, then the hub cache when offline) and read its config.

    Args:
        name_or_path: a local folder or a hub id ("org/name").
        what: human-readable kind of model for error messages, e.g. "text encoder".
        subfolder: subfolder holding the model, e.g. "vae" inside a pipeline repository.

    Returns:
        The resolved model.

    Raises:
        MissingWeightsError: if the model is neither a local folder nor obtainable from the hub.
    """
    name = os.fspath(name_or_path)
    folder = Path(name).expanduser()
    if folder.is_dir():
        model_dir = folder / subfolder if subfolder else folder
        if not (model_dir / "config.json").is_file():
            raise MissingWeightsError(
                _missing_message(name, what, f"{str(model_dir)!r} has no config.json", subfolder, is_path=True)
            )
        return ResolvedModel(str(folder), subfolder, True, read_model_config(model_dir))
    if _looks_like_path(name) or folder.exists():
        raise MissingWeightsError(_missing_message(name, what, "no such local folder", subfolder, is_path=True))
    return _resolve_hub_id(name, what=what, subfolder=subfolder)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Cheap TCP probe of the hub endpoint, so that a machine without network fails in seconds.

    Without it huggingface_hub retries a refused or unresolvable host for about 25 s. Behind an HTTP(S)
    proxy the direct probe says nothing, so the hub is assumed reachable there.
    """
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _resolve_hub_id(repo_id: str, *, what: str, subfolder: str | None) -> ResolvedModel:
    """Fetch (or, offline, look up in the cache) the `config.json` of a hub model."""
    hub = require("huggingface_hub", "hub")
    if hub_offline():
        local_only, why = True, "not a local folder and not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
    elif not _hub_reachable():
        local_only, why = True, "not a local folder, not in the Hugging Face cache, and the hub is unreachable"
    else:
        local_only, why = False, "not a local folder and the hub download failed"
    try:
        config_path = hub.hf_hub_download(repo_id, "config.json", subfolder=subfolder, local_files_only=local_only)
    except Exception as exc:
        # Any failure to fetch the config (LocalEntryNotFoundError offline, RepositoryNotFoundError, gated
        # repos, HTTP / connection errors whose base classes differ between huggingface_hub versions, invalid
        # repo ids) means the weights are unavailable; the original error stays attached as __cause__.
        reason = why if local_only else f"{why} ({type(exc).__name__})"
        raise MissingWeightsError(_missing_message(repo_id, what, reason, subfolder)) from exc
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    if not local_only:
        _announce_download(hub, repo_id, what, subfolder)
    return ResolvedModel(repo_id, subfolder, local_only, config)


def _announce_download(hub: Any, repo_id: str, what: str, subfolder: str | None) -> None:
    """One line before weights may be downloaded: what, and how big the repository's files are."""
    import sys

    size = "size unknown"
    with contextlib.suppress(Exception):  # the size is a courtesy; any hub error leaves it unknown
        info = hub.HfApi().model_info(repo_id, files_metadata=True)
        prefix = f"{subfolder}/" if subfolder else ""
        total = sum(f.size or 0 for f in info.siblings if f.rfilename.startswith(prefix))
        size = f"up to {total / 2**30:.1f} GiB"
    where = f"{repo_id}/{subfolder}" if subfolder else repo_id
    print(f"note: the {what} {where} is fetched from the Hugging Face hub unless cached ({size})", file=sys.stderr)


def missing_weights_error(resolved: ResolvedModel, what: str, exc: BaseException) -> MissingWeightsError:
    """Convert a library exception raised while loading weights into a MissingWeightsError.

    Args:
        resolved: the model that failed to load.
        what: human-readable kind of model.
        exc: the original exception (kept as `__cause__` by the caller's `raise ... from exc`).

    Returns:
        The error to raise.
    """
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    is_path = os.path.isdir(os.path.expanduser(resolved.source))
    reason = f"loading failed ({type(exc).__name__}: {first_line})"
    return MissingWeightsError(_missing_message(resolved.source, what, reason, resolved.subfolder, is_path=is_path))

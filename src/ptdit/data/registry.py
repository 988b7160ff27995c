"""`data.dataset` names -> dataset builders: the built-in procedural datasets and the stored formats.

A builder takes keyword arguments `path` (`data.path`), `size`, `seed` and its own options (`data.options`);
its signature is the list of valid options. `files=True` marks datasets read from storage: the training
sampler shuffles them with a seeded permutation per epoch (`ptdit.data.sampling.EpochShuffle`), while the
procedural datasets are already i.i.d. per index and are read in index order. Add a format with
`register_dataset` (docs/data.md#adding-a-format).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ptdit.data import files, folders
from ptdit.data.procedural import DATASETS


@dataclass(frozen=True)
class DatasetEntry:
    build: Callable[..., Any]
    files: bool  # stored samples: needs data.path, shuffled per epoch, may use buckets

    def options(self) -> list[str]:
        params = inspect.signature(self.build).parameters
        return sorted(set(params) - {"self", "path", "size", "seed", "args", "kwargs"})


REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, build: Callable[..., Any], *, files: bool) -> None:
    """Makes `data.dataset=name` build `build(path=..., size=..., seed=..., **options)`."""
    REGISTRY[name] = DatasetEntry(build=build, files=files)


def _procedural(name: str) -> Callable[..., Any]:
    cls = DATASETS[name]

    def build(*, path: Any = None, size: int, seed: int, **options: Any) -> Any:
        if path is not None:
            raise ValueError(f"data.path is for stored datasets; the built-in {name!r} dataset takes none")
        return cls(size=size, seed=seed, **options)

    build.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]  # its options are the class's
    return build


for _name in DATASETS:
    register_dataset(_name, _procedural(_name), files=False)
register_dataset("webdataset", files.webdataset_dataset, files=True)
register_dataset("parquet", files.parquet_dataset, files=True)
register_dataset("image-folder", folders.image_folder_dataset, files=True)
register_dataset("video-folder", folders.video_folder_dataset, files=True)


def _feature_cache(*, path: Any = None, size: int, seed: int) -> Any:
    """A folder written by `ptdit cache` (docs/data.md#feature-caches). The trainer checks it against its config
    (`ptdit.train.features.open_cache`); this entry opens it unchecked, for `ptdit bench data`."""
    from ptdit.data.cache import FeatureCache

    if not isinstance(path, str):
        raise ValueError("data.dataset=cache needs data.path=DIR (one folder written by ptdit cache)")
    return FeatureCache(path)


# A cache is read in the order of the dataset it was written from (see `ptdit.train.setup.build_sampler`).
register_dataset("cache", _feature_cache, files=False)


def procedural_options() -> set[str]:
    """Options of the built-in datasets (`max_objects`, `num_samples`, ...)."""
    return {opt for name in DATASETS for opt in REGISTRY[name].options()}


def get_entry(name: str) -> DatasetEntry:
    if name not in REGISTRY:
        raise ValueError(f"unknown data.dataset {name!r}; valid names: {list(REGISTRY)}")
    return REGISTRY[name]


def build_named_dataset(name: str, *, path: Any, size: int, seed: int, options: dict[str, Any]) -> Any:
    """The dataset `data.dataset=name` with `data.path` and `data.options`.

    Options of the built-in datasets given to a stored one (a config turned onto shards with `--set
    data.dataset=webdataset`) are ignored with a warning naming them; any other unknown option is an error.
    """
    entry = get_entry(name)
    valid = entry.options()
    unknown = sorted(set(options) - set(valid))
    ignored = [k for k in unknown if entry.files and k in procedural_options()]
    wrong = [k for k in unknown if k not in ignored]
    if wrong:
        raise ValueError(f"unknown data.options {wrong} for dataset {name!r}; valid options: {valid or 'none'}")
    if ignored:
        warnings.warn(
            f"data.options {ignored} belong to the built-in datasets and are ignored for {name!r}", stacklevel=2
        )
    kept = {k: v for k, v in options.items() if k not in ignored}
    return entry.build(path=path, size=size, seed=seed, **kept)


__all__ = ["REGISTRY", "DatasetEntry", "build_named_dataset", "get_entry", "register_dataset"]

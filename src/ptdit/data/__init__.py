"""Training data. Re-exported here: the built-in procedural datasets (no files, deterministic from a seed; their
oracles are in `ptdit.eval.oracle`). Stored data (WebDataset shards, Parquet, folders), buckets, samplers and the
`data.dataset` registry live in `files`, `sources`, `decode`, `buckets`, `sampling`, `registry` and `export`
(docs/data.md)."""

from ptdit.data.captions import VOCABULARY, format_caption, parse_caption
from ptdit.data.procedural import DATASETS, build_dataset, random_captions
from ptdit.data.shapes import MovingShapesDataset, ProceduralDataset, ShapesDataset
from ptdit.data.turntable import TurntableDataset

__all__ = [
    "DATASETS",
    "VOCABULARY",
    "MovingShapesDataset",
    "ProceduralDataset",
    "ShapesDataset",
    "TurntableDataset",
    "build_dataset",
    "format_caption",
    "parse_caption",
    "random_captions",
]

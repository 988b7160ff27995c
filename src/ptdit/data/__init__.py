"""Built-in procedural datasets (no files, deterministic from a seed) and their oracle caption scorers."""

from ptdit.data.captions import VOCABULARY, format_caption, parse_caption
from ptdit.data.oracle import ORACLES, score_moving_shapes, score_shapes, score_turntable
from ptdit.data.procedural import DATASETS, build_dataset, random_captions
from ptdit.data.shapes import MovingShapesDataset, ProceduralDataset, ShapesDataset
from ptdit.data.turntable import TurntableDataset

__all__ = [
    "DATASETS",
    "ORACLES",
    "VOCABULARY",
    "MovingShapesDataset",
    "ProceduralDataset",
    "ShapesDataset",
    "TurntableDataset",
    "build_dataset",
    "format_caption",
    "parse_caption",
    "random_captions",
    "score_moving_shapes",
    "score_shapes",
    "score_turntable",
]

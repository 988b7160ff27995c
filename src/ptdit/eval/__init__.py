"""Evaluation: the paper's metrics and the tools around them.

* Frechet distance and KID: `ptdit.eval.frechet_distance` (re-exported here), `ptdit.eval.frechet`.
* Feature networks with weights from local files: the FID Inception-v3 (`inception`), I3D for FVD (`i3d`),
  any transformers image encoder (`hf_features`), all behind one registry (`features.FEATURES`).
* Sample sets, cached feature statistics, protocol presets and score records: `samples`, `stats`,
  `protocols`, `records`; the harness that ties them together: `metrics`; CLIPScore / CLIPSIM: `clip_score`
  (docs/evaluation.md).
* The procedural datasets' oracle (`oracle`) and the oracle benchmark built on it (`suites`, `checks`,
  `benchmark`), generation for evaluation (`generate`), shapes-FD (`shapes_fd`), evaluation during training
  (`during_training`) (docs/oracle-benchmark.md), FLOP accounting (`flops`), training previews (`previews`) and
  the demo report (`report`).

Submodules are imported explicitly (`from ptdit.eval import flops`) so that importing this package stays cheap.
"""

from ptdit.eval.frechet import feature_statistics, frechet_distance, kernel_distance

__all__ = ["feature_statistics", "frechet_distance", "kernel_distance"]

"""Evaluation: the procedural datasets' oracle (`ptdit.eval.oracle`) and the oracle benchmark built on it
(`suites`, `checks`, `benchmark`), generation for evaluation (`generate`), shapes-FD (`shapes_fd`) and the Frechet
distance (`frechet`), evaluation during training (`during_training`), FLOP accounting (`flops`), training previews
(`previews`) and the demo report (`report`). docs/oracle-benchmark.md describes the benchmark and shapes-FD.

Submodules are imported explicitly (`from ptdit.eval import flops`) so that importing this package stays cheap.
"""

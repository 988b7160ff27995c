"""Benchmarks (`ptdit bench`): side-by-side latency and memory of PT-DiT and its baselines.

`ptdit.bench.harness` builds and times the models; `ptdit.bench.timing` measures time and peak memory.
Submodules are imported explicitly so that importing this package stays cheap.
"""

"""Evaluation tools: FLOP accounting (`ptdit.eval.flops`) and side-by-side latency benchmarks (`ptdit.eval.bench`).

Submodules are imported explicitly (`from ptdit.eval import flops`) so that importing this package stays cheap.
"""

"""Evaluation: the procedural datasets' oracle (`ptdit.eval.oracle`), FLOP accounting (`ptdit.eval.flops`),
training previews (`ptdit.eval.previews`) and the demo report (`ptdit.eval.report`).

Submodules are imported explicitly (`from ptdit.eval import flops`) so that importing this package stays cheap.
"""

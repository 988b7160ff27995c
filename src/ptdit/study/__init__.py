"""The paper's claims, tested in miniature: `ptdit study ablations | efficiency | attention` (docs/study.md).

Each study trains small models on the built-in shapes data with the library's own training loop
(`ptdit.train.loop.train`), evaluates them with the oracle benchmark and shapes-FD (`ptdit.eval`), and writes
JSON, PNG plots and an HTML report.
"""

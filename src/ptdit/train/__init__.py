"""Training utilities (parallelism wrappers applied from outside the single-device model code)."""

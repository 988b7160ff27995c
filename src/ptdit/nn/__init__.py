"""Generic layers without diffusion knowledge."""

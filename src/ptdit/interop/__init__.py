"""Interoperability with other code bases (reference weights, diffusers)."""

"""Helpers shared by several test files: tiny models and inputs, tiny offline encoders, tiny training configs.

Import them as `from tests.helpers.models import tiny_config` etc.; pytest fixtures live in tests/conftest.py.
"""

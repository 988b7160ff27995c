"""The ptdit test suite; a package so that tests/helpers is importable as `tests.helpers` and test files with the
same name in different folders do not clash."""

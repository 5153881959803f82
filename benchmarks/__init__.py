"""Benchmarks for chatsync (not part of the test suite): `python -m benchmarks.bench`."""

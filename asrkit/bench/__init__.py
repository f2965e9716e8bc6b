"""Benchmarks behind ``asrkit bench ...`` (their tables are quoted in docs/benchmarks.md)."""

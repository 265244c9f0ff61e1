"""Benchmarks: `make bench` (full) and `make bench-quick` (under a minute). See bench/run.py."""

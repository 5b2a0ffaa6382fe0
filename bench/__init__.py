"""Benchmarks: each module `bench/<name>.py` with a `run(progress) -> dict` writes bench/results/<name>.json."""

"""Real components that tests and benchmarks both start: a virtual X11 desktop (`testbed/desktop.py`) and
collector processes (`testbed/collector_process.py`). Benchmarks import these, never the tests themselves
(an import-linter contract in pyproject.toml)."""

"""`python -m bench [name ...]`: run the benchmarks, print their figures, write bench/results/<name>.json."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._figures import IncompleteFigures, checked

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))


def main() -> int:
    parser = argparse.ArgumentParser(prog="./dev bench", description="Run Productimon's benchmarks.")
    parser.add_argument("names", nargs="*", help=f"which to run (default: all of {', '.join(available())})")
    args = parser.parse_args()
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"bench: error: no benchmark named {', '.join(unknown)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    failed = False
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        try:
            figures = checked(module.run(lambda message: print(f"   {message}", flush=True)))
        except IncompleteFigures as exc:
            print(f"bench: error: {name}: {exc}", file=sys.stderr)
            return 2
        result = {
            "benchmark": name,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
            "seconds": round(time.monotonic() - started, 1),
            **figures,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        for key, value in figures.items():
            print(f"   {key}: {value}")
        if figures.get("meets_target") is False:
            failed = True
            print(f"   {name}: BELOW TARGET")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

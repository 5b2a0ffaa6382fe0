"""A real worker process that dies, as abruptly as SIGKILL (os._exit: no cleanup, no commit, no flush of
anything faust holds), as a chosen step of a batch ends (stream_jobs/batch.py STEPS), for the fault tests.

PRODUCTIMON_TEST_CRASH_AFTER names the step and PRODUCTIMON_TEST_CRASH_ON which time it ends (default 2: one
batch goes through whole first). For "commit" the death comes once faust has committed offsets after that many
commit steps: the batch is acknowledged to the broker, and the next worker must not need it again. The death is
announced on stderr first ("crashing after <step>"), which the worker's log keeps."""

from __future__ import annotations

import os
import sys
import threading

CRASH_EXIT = 86


def die(what: str) -> None:
    sys.stderr.write(f"crashing after {what}\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT)


def main() -> int:
    from faust.transport.consumer import Consumer

    from stream_jobs import app
    from stream_jobs.batch import STEPS, Steps

    step = os.environ["PRODUCTIMON_TEST_CRASH_AFTER"]
    occurrence = int(os.environ.get("PRODUCTIMON_TEST_CRASH_ON", "2"))
    assert step in STEPS, step
    seen = {"n": 0}
    lock = threading.Lock()

    def on_done(name: str) -> None:
        with lock:
            if name != step:
                return
            seen["n"] += 1
            if seen["n"] == occurrence and step != "commit":
                die(f"{step} #{occurrence}")

    if step == "commit":
        force_commit = Consumer.force_commit

        async def commit_then_die(self, *args, **kwargs) -> bool:
            did = await force_commit(self, *args, **kwargs)
            if did and seen["n"] >= occurrence:
                die(f"commit #{seen['n']} (offsets committed)")
            return did

        Consumer.force_commit = commit_then_die  # type: ignore[method-assign]
    return app.run_worker(Steps(on_done))


if __name__ == "__main__":
    sys.exit(main())

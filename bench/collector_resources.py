"""The collector's own CPU and memory while it tracks synthetic activity on a real X11 desktop (issue 18: at most
0.5 % of one core on average, at most 45 MB resident), installed alone as a workstation has it.

The collector distribution is built (infra/collector_dist.py) and installed into a new virtual environment with
only its dependencies; that `productimon-collector run` is enrolled against a private gateway and runs under
Xvfb + openbox while xdotool switches between windows, types and clicks. Beside it, in the same run and on the
same desktop, a baseline process with the same interpreter and libraries does only what any window tracker
must: ask pywinctl for the active window and its title once a second. CPU is each process's own user + system
time over the measured stretch (from /proc), so other load on this shared machine does not inflate it; memory
is VmRSS sampled every second.

`PRODUCTIMON_BENCH_COLLECTOR_SECONDS` sets the measured stretch (default 180 s).
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench._stack import bench_stack
from infra.collector_dist import build_wheel, install_alone, installed_bytes
from testbed.collector_process import enrolled_home, spool_depth, start_collector, stop_collector
from testbed.desktop import Desktop, virtual_desktop

MEASURE_S = float(os.environ.get("PRODUCTIMON_BENCH_COLLECTOR_SECONDS", "180"))
WARM_UP_S = 10.0
TARGET_CPU_PERCENT = 0.5
TARGET_RSS_MB = 45.0
TICKS = os.sysconf("SC_CLK_TCK")

BASELINE = """
import time, pywinctl
while True:
    window = pywinctl.getActiveWindow()
    if window is not None:
        window.title
    time.sleep(1)
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _activity(desktop: Desktop, windows: list[str], stop: threading.Event, counts: dict[str, int]) -> None:
    """A person at work: a window for 5–15 s, typing in bursts at a few keys a second, a click now and then."""
    rng = random.Random(7)
    words = ["report", "numbers", "meeting", "draft", "review", "plan", "notes", "budget"]
    while not stop.is_set():
        window = rng.choice(windows)
        desktop.focus(window)
        until = time.monotonic() + rng.uniform(5, 15)
        while time.monotonic() < until and not stop.is_set():
            text = " ".join(rng.choices(words, k=rng.randint(1, 3)))
            desktop.type(text)
            counts["keys"] += len(text)
            if rng.random() < 0.3:
                desktop.click(window, 1)
                counts["clicks"] += 1
            stop.wait(rng.uniform(0.5, 3.0))


def _measure(pids: dict[str, int], seconds: float, progress) -> dict[str, dict[str, float]]:
    start_cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    rss: dict[str, list[float]] = {name: [] for name in pids}
    began = time.monotonic()
    next_note = began + 30
    while (elapsed := time.monotonic() - began) < seconds:
        for name, pid in pids.items():
            rss[name].append(_rss_mb(pid))
        if time.monotonic() >= next_note:
            progress(f"{elapsed:.0f}/{seconds:.0f} s measured")
            next_note += 30
        time.sleep(1)
    elapsed = time.monotonic() - began
    return {
        name: {
            "cpu_percent_of_one_core": 100 * (_cpu_seconds(pid) - start_cpu[name]) / elapsed,
            "rss_mb_mean": sum(rss[name]) / len(rss[name]),
            "rss_mb_max": max(rss[name]),
        }
        for name, pid in pids.items()
    }


def run(progress) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        progress("building the collector distribution and installing it alone")
        alone = install_alone(build_wheel(Path(tmp) / "wheel"), Path(tmp) / "venv")
        installed_mb = installed_bytes(alone) / 2**20
        stack = bench_stack(Path(tmp) / "stack")
        try:
            stack.start_broker()
            stack.start_warehouse()
            stack.start_gateway()
            stack.start_worker()  # the gateway acknowledges a batch once it is stored: the collector's real path
            home = enrolled_home(stack.settings, Path(tmp) / "collector", device_name="bench", python=str(alone)).home
            with virtual_desktop() as desktop:
                windows = [desktop.open_xterm(f"Document {n} - Editor") for n in range(3)]
                windows.append(desktop.open_xcalc())
                collector = start_collector(home, desktop.env, Path(tmp) / "collector.log", python=str(alone))
                baseline = subprocess.Popen([str(alone), "-c", BASELINE], env=desktop.env, cwd=tmp)
                stop = threading.Event()
                counts = {"keys": 0, "clicks": 0}
                driver = threading.Thread(target=_activity, args=(desktop, windows, stop, counts), daemon=True)
                driver.start()
                try:
                    progress(f"warming up {WARM_UP_S:.0f} s, then measuring {MEASURE_S:.0f} s of activity")
                    time.sleep(WARM_UP_S)
                    figures = _measure({"collector": collector.pid, "baseline": baseline.pid}, MEASURE_S, progress)
                finally:
                    stop.set()
                    driver.join(30)
                    baseline.kill()
                    baseline.wait()
                    stop_collector(collector)
                left_in_spool = spool_depth(home)
        finally:
            stack.down()
    mine, floor = figures["collector"], figures["baseline"]
    return {
        "installed_mb": round(installed_mb, 1),
        "measured_s": MEASURE_S,
        "keys_typed": counts["keys"],
        "clicks_made": counts["clicks"],
        "collector_cpu_percent": round(mine["cpu_percent_of_one_core"], 3),
        "collector_rss_mb_mean": round(mine["rss_mb_mean"], 1),
        "collector_rss_mb_max": round(mine["rss_mb_max"], 1),
        "baseline_cpu_percent": round(floor["cpu_percent_of_one_core"], 3),
        "baseline_rss_mb_mean": round(floor["rss_mb_mean"], 1),
        "ratio_cpu_collector_to_baseline": round(mine["cpu_percent_of_one_core"] / floor["cpu_percent_of_one_core"], 2)
        if floor["cpu_percent_of_one_core"]
        else None,
        "ratio_rss_collector_to_baseline": round(mine["rss_mb_mean"] / floor["rss_mb_mean"], 2),
        "intervals_left_in_spool_after_stop": left_in_spool,
        "target": f"collector CPU <= {TARGET_CPU_PERCENT}% of one core on average, RSS <= {TARGET_RSS_MB:.0f} MB",
        # A run whose collector could not deliver measured something else than a collector at work.
        "meets_target": mine["cpu_percent_of_one_core"] <= TARGET_CPU_PERCENT
        and mine["rss_mb_max"] <= TARGET_RSS_MB
        and left_in_spool == 0,
    }

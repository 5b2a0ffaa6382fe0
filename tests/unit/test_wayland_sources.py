"""The pure parts of the collector's Wayland sources (collector/wayland/), and the opt-in input-device counter
reading real pipes that carry the kernel's input_event records, as /dev/input devices do."""

from __future__ import annotations

import os
import resource
import struct
import time

from hypothesis import given
from hypothesis import strategies as st

from collector.wayland.idle import SHORT_TIMER_S, idle_seconds, timers_for
from collector.wayland.input_devices import EV_KEY, EV_REL, EVENT, InputDeviceCounter, counted, decode
from collector.wayland.wlroots import is_activated

KEY_A, BTN_LEFT, BTN_RIGHT = 30, 0x110, 0x111


def record(kind: int, code: int, value: int) -> bytes:
    return EVENT.pack(0, 0, kind, code, value)


def test_the_activated_state_is_found_in_a_list_or_in_the_raw_array():
    assert is_activated([0, 2])
    assert not is_activated([0, 1, 3])
    assert is_activated(struct.pack("<II", 1, 2))
    assert not is_activated(b"")


def test_idle_is_zero_until_a_timer_fires_then_its_timeout_plus_the_time_since():
    assert idle_seconds({}, 100.0) == 0.0
    assert idle_seconds({5.0: 100.0}, 100.0) == 5.0
    assert idle_seconds({5.0: 100.0, 180.0: 275.0}, 280.0) == 185.0


@given(st.floats(min_value=0.1, max_value=86400))
def test_the_timers_reach_the_threshold_and_never_beyond(threshold):
    timers = timers_for(threshold)
    assert max(timers) == threshold
    assert min(timers) == min(SHORT_TIMER_S, threshold)


def test_keys_and_clicks_are_counted_presses_only():
    events = [(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 2), (EV_KEY, KEY_A, 0), (EV_KEY, BTN_LEFT, 1), (EV_KEY, BTN_LEFT, 0)]
    assert counted(events) == (1, 1, True)
    assert counted([(EV_REL, 0, 3)]) == (0, 0, True)  # the pointer moved: input, nothing counted
    assert counted([]) == (0, 0, False)


def test_only_whole_records_are_decoded():
    data = record(EV_KEY, KEY_A, 1) + record(EV_KEY, BTN_RIGHT, 1)
    assert decode(data + data[:5]) == [(EV_KEY, KEY_A, 1), (EV_KEY, BTN_RIGHT, 1)]


def test_the_device_counter_counts_from_every_device_and_keeps_no_key(tmp_path):
    _counts_from_two_devices(tmp_path)


def test_the_device_counter_works_with_descriptors_above_1023(tmp_path):
    """A long-lived process holds many descriptors; select() would refuse these (the suite once hit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    fillers = []
    try:
        while not fillers or fillers[-1] < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        _counts_from_two_devices(tmp_path)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _counts_from_two_devices(tmp_path) -> None:
    fifos = [tmp_path / "event0", tmp_path / "event1"]
    for fifo in fifos:
        os.mkfifo(fifo)
    # A writer must hold each pipe open before the counter's non-blocking open, like a device that is there.
    readers = [os.open(f, os.O_RDONLY | os.O_NONBLOCK) for f in fifos]
    writers = [os.open(f, os.O_WRONLY) for f in fifos]
    clock = [1000.0]
    counter = InputDeviceCounter(pattern=str(tmp_path / "event*"), clock=lambda: clock[0]).start()
    try:
        clock[0] = 1010.0
        os.write(writers[0], record(EV_KEY, KEY_A, 1) * 3 + record(EV_KEY, KEY_A, 0))
        half = record(EV_KEY, BTN_LEFT, 1)
        os.write(writers[1], half[:10])  # a record split across reads is counted once whole
        time.sleep(0.2)
        os.write(writers[1], half[10:])
        deadline = time.monotonic() + 5
        taken = (0, 0)
        while time.monotonic() < deadline and taken != (3, 1):
            time.sleep(0.05)
            keys, clicks = counter.take()
            taken = (taken[0] + keys, taken[1] + clicks)
        assert taken == (3, 1)
        assert counter.take() == (0, 0)
        clock[0] = 1012.5
        assert counter.seconds_since_input() == 2.5
    finally:
        counter.stop()
        for fd in readers + writers:
            os.close(fd)


def test_without_a_readable_device_the_counter_says_why(tmp_path):
    try:
        InputDeviceCounter(pattern=str(tmp_path / "event*")).start()
    except RuntimeError as exc:
        assert "no input device can be read" in str(exc) and "`input` group" in str(exc)
    else:
        raise AssertionError("a counter started with no device")

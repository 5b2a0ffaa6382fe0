"""The running collector (`productimon-collector run`): tracking, uploading and upkeep as three threads.

- tracking: samples every second into the spool (collector/tracker.py);
- uploading: the spool to the gateway, oldest first, with backoff (collector/uploader.py);
- upkeep: sends changed device info and renews the certificate before it expires.
Only one collector runs per home (a lock file), so two never share a spool or a device_seq.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import IO, TYPE_CHECKING

from collector.browser import BrowserIntake, BrowserUrls
from collector.config import CollectorHome, CollectorSettings
from collector.enrolled import (
    Enrollment,
    certificate_validity,
    forget_device,
    forget_recording,
    load_credentials,
    load_enrollment,
    renewal_due,
    save_credentials,
    save_enrollment,
)
from collector.enrollment import DeviceInfo, fetch_privacy, renew, update_info
from collector.intervals import IntervalRules
from collector.notice_sync import NoticeSync
from collector.sampling import Sources, open_sources
from collector.spool import Spool
from collector.tracker import Tracker, run_tracking
from collector.transport import DeviceIngest, device_channel
from collector.uploader import UploadHealth, run_uploader
from collector.wire import RpcError, rpc_reason
from plumbing.files import write_atomically
from schemas.privacy_rules import AccountPrivacy

if TYPE_CHECKING:  # imported when the API is switched on (`Agent._activitywatch`): off by default, 2 MB less resident
    from collector.aw_api import AwApi
    from collector.aw_forward import Forwarder, ImportChannel
    from collector.aw_store import AwStore

log = logging.getLogger(__name__)

UPKEEP_EVERY_S = 3600.0
UPKEEP_RETRY_S = 300.0
# The account's privacy choices are fetched this often: a change in the dashboard reaches the device within it.
PRIVACY_EVERY_S = 30.0
STATUS_EVERY_S = 5.0
DRAIN_AT_STOP_S = 5.0


class AlreadyRunning(Exception):
    """Another collector holds this home's lock."""


class RunLock:
    """An exclusive OS lock on a file, released by the OS when the process dies (also on kill -9)."""

    def __init__(self, path: os.PathLike) -> None:
        self._file: IO[str] = open(path, "a+")  # noqa: SIM115 (held for the life of the process)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(self._file.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise AlreadyRunning(f"another collector is already running with {path}") from None

    def release(self) -> None:
        self._file.close()


def is_running(home: CollectorHome) -> bool:
    """Whether a collector holds this home's lock now."""
    if not home.lock_file.exists():
        return False
    try:
        RunLock(home.lock_file).release()
    except AlreadyRunning:
        return True
    return False


def pause_until_ms(home: CollectorHome) -> int | None:
    """None when tracking is on; else when it resumes by itself (0: only `resume` ends the pause)."""
    try:
        text = home.paused_file.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    try:
        return int(text or 0)
    except ValueError:
        return 0


def pause_in_effect(until_ms: int | None, now_ms: int) -> bool:
    """Whether a pause read by `pause_until_ms` still holds at `now_ms`."""
    return until_ms is not None and (until_ms == 0 or until_ms > now_ms)


def is_paused(home: CollectorHome, now_ms: int) -> bool:
    """Whether tracking is paused now; a pause that has run out is removed."""
    until = pause_until_ms(home)
    if until is not None and not pause_in_effect(until, now_ms):
        home.paused_file.unlink(missing_ok=True)
    return pause_in_effect(until, now_ms)


def current_device_info(enrollment: Enrollment, settings: CollectorSettings) -> DeviceInfo:
    """What the gateway should know now: the configured name (or the enrolled one), this OS and version."""
    return DeviceInfo(settings.device_name or enrollment.device_name)


@dataclass
class Upkeep:
    """Device info and certificate renewal; each step retried until it succeeds."""

    home: CollectorHome
    settings: CollectorSettings
    reconnect: threading.Event
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)

    def once(self) -> bool:
        """Do what is due; True when nothing is left to retry."""
        done = True
        enrollment = load_enrollment(self.home)
        info = current_device_info(enrollment, self.settings)
        if info != enrollment.device_info:
            try:
                update_info(enrollment.server, load_credentials(self.home), info)
                save_enrollment(
                    self.home, replace(enrollment, device_name=info.name, os=info.os, os_version=info.os_version)
                )
                log.info("sent device info to the gateway: %s, %s %s", info.name, info.os, info.os_version)
            except RpcError as exc:
                log.warning("could not send device info (%s); will retry", rpc_reason(exc))
                done = False
        validity = certificate_validity(self.home)
        if renewal_due(validity, self.clock(), self.settings.renew_at_remaining):
            try:
                save_credentials(self.home, renew(enrollment.server, load_credentials(self.home)))
                self.reconnect.set()
                log.info(
                    "renewed the device certificate (was valid until %s); now valid until %s",
                    validity.not_after.isoformat(timespec="seconds"),
                    certificate_validity(self.home).not_after.isoformat(timespec="seconds"),
                )
            except RpcError as exc:
                log.warning(
                    "could not renew the device certificate, valid until %s (%s); will retry",
                    validity.not_after.isoformat(timespec="seconds"),
                    rpc_reason(exc),
                )
                done = False
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                done = self.once()
            except Exception as exc:  # upkeep must never end the collector; it says why and tries again
                log.warning("device upkeep failed (%s: %s); will retry", type(exc).__name__, exc)
                done = False
            stop.wait(UPKEEP_EVERY_S if done else UPKEEP_RETRY_S)


def saved_account_privacy(home: CollectorHome) -> AccountPrivacy:
    """The account's choices as last fetched; the defaults (titles scrubbed, no rules) before the first fetch. A
    file this version cannot read is left for the next fetch to replace, never fatal."""
    try:
        return AccountPrivacy.from_dict(json.loads(home.privacy_file.read_text()))
    except FileNotFoundError:
        return AccountPrivacy()
    except (OSError, ValueError, TypeError) as exc:
        log.warning(
            "cannot read %s (%s); using the default privacy choices until the next fetch", home.privacy_file, exc
        )
        return AccountPrivacy()


@dataclass
class PrivacySync:
    """Fetches the account's privacy choices every PRIVACY_EVERY_S over mTLS, keeps them on disk for offline
    starts, and hands them to the tracker, which applies them (with config.toml's rules) before spooling."""

    home: CollectorHome
    settings: CollectorSettings
    tracker: Tracker

    def once(self) -> None:
        enrollment = load_enrollment(self.home)
        fetched = fetch_privacy(enrollment.server, load_credentials(self.home))
        choice = AccountPrivacy.from_dict(fetched)
        if choice != self.tracker.privacy.account:
            write_atomically(self.home.privacy_file, json.dumps(choice.to_dict()).encode())
            self.tracker.privacy = replace(self.settings.privacy(), account=choice)
            log.info("privacy choices of the account: titles %s, %d rules", choice.title_mode, len(choice.rules))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.once()
            except RpcError as exc:
                log.warning(
                    "could not fetch the account's privacy choices (%s); keeping the last ones", rpc_reason(exc)
                )
            except Exception as exc:  # never the end of the collector: the last choices stay in force
                log.warning("could not apply the account's privacy choices (%s: %s)", type(exc).__name__, exc)
            stop.wait(PRIVACY_EVERY_S)


@dataclass
class StatusReport:
    """What the running collector writes for `status` every few seconds."""

    pid: int
    started_ms: int
    updated_ms: int
    paused: bool
    unavailable: list[str]
    spooled: int
    not_spooled: int
    # Browser reports taken and refused (by reason) since start; None when the intake could not listen.
    browser_reports: dict | None = None
    # The uploader's last failure, until a batch goes through (collector/uploader.py UploadHealth).
    upload: dict | None = None
    # Where each working source reads from (collector/sampling.py Sources.used).
    sources: list[str] | None = None
    # The ActivityWatch-compatible API, when switched on (collector/aw_api.py, collector/aw_forward.py).
    activitywatch_api: dict | None = None


def delivered_until(spool: Spool, now_ms: int) -> int:
    """The time before which every interval the collector recorded is delivered: now with an empty spool, else a
    margin before the oldest waiting one was spooled (its start lies at most an interval's length before)."""
    oldest = spool.status().oldest_ms if spool.depth else None
    return now_ms if oldest is None else oldest - 10 * 60_000


@dataclass
class Watchers:
    """The ActivityWatch-compatible API, its store and the forwarder of what it takes."""

    store: AwStore
    api: AwApi
    channel: ImportChannel
    forwarder: Forwarder

    def status(self) -> dict:
        return {"port": self.api.port, **asdict(self.api.status()), **asdict(self.forwarder.status)}

    def stop(self) -> None:
        self.api.stop()
        self.channel.close()
        self.store.close()


class Agent:
    def __init__(
        self,
        home: CollectorHome,
        settings: CollectorSettings,
        open_sources: Callable[[], Sources] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = home
        self.settings = settings
        self._open_sources = open_sources
        self._clock = clock

    def _browser_intake(self) -> BrowserIntake | None:
        """The loopback endpoint the browser extension's native host reports to; tracking goes on without URLs
        when it cannot listen."""
        try:
            return BrowserIntake(self.home, port=self.settings.browser_intake_port).start()
        except OSError as exc:
            log.warning("browser URLs are unavailable: %s", exc)
            return None

    def _activitywatch(self, enrollment: Enrollment, spool: Spool) -> Watchers | None:
        """The ActivityWatch-compatible API and its forwarder, when switched on; tracking goes on without them
        when the port is taken."""
        if not self.settings.activitywatch_api:
            return None
        from collector.aw_api import AwApi
        from collector.aw_forward import Forwarder, ImportChannel
        from collector.aw_store import AwStore

        store = AwStore(self.home.activitywatch_file, paused=lambda: is_paused(self.home, int(self._clock() * 1000)))
        try:
            api = AwApi(store, socket.gethostname(), self.settings.activitywatch_api_port).start()
        except OSError as exc:
            store.close()
            log.warning(
                "the ActivityWatch-compatible API cannot listen on 127.0.0.1:%d: %s",
                self.settings.activitywatch_api_port,
                exc,
            )
            return None
        channel = ImportChannel(lambda: device_channel(enrollment.server, load_credentials(self.home)))
        forwarder = Forwarder(
            store,
            self.home.activitywatch_forward_file,
            channel,
            lambda: replace(self.settings.privacy(), account=saved_account_privacy(self.home)),
            lambda: delivered_until(spool, int(self._clock() * 1000)),
            self._clock,
            self.settings.activitywatch_forward_seconds,
        )
        log.info("ActivityWatch watchers may report to http://127.0.0.1:%d/api/0/", api.port)
        return Watchers(store, api, channel, forwarder)

    def run(self, stop: threading.Event) -> None:
        home, settings = self.home, self.settings
        enrollment = load_enrollment(home)
        load_credentials(home)  # refuse to start without them, with the reason
        lock = RunLock(home.lock_file)
        spool = Spool(home.spool_file, max_bytes=settings.spool_max_bytes)
        if self._open_sources is not None:
            sources = self._open_sources()
        else:
            sources = open_sources(
                idle_after_s=settings.idle_after_seconds, count_input_devices=settings.count_input_devices
            )
        for line in sources.unavailable:
            log.warning("%s", line)
        intake = self._browser_intake()
        watchers = self._activitywatch(enrollment, spool)
        urls = BrowserUrls(intake, int(settings.browser_report_max_age_seconds * 1000)) if intake else None
        rules = IntervalRules(max_interval_ms=int(settings.max_interval_seconds * 1000))
        new_intervals = threading.Event()  # wakes the uploader: an interval is delivered as soon as it closes
        privacy = replace(settings.privacy(), account=saved_account_privacy(home))
        tracker = Tracker(spool, privacy, settings.idle_after_seconds, rules, on_spooled=new_intervals.set)
        reconnect = threading.Event()
        health = UploadHealth(enrollment.server)
        gone: list[str] = []  # the gateway's reason, once it refused this device for good

        def retire(reason: str) -> None:
            gone.append(reason)
            stop.set()

        started_ms = int(self._clock() * 1000)
        last_status = 0.0

        def report(paused: bool, now: bool = False) -> None:
            nonlocal last_status
            if not now and time.monotonic() - last_status < STATUS_EVERY_S:
                return
            last_status = time.monotonic()
            status = StatusReport(
                os.getpid(),
                started_ms,
                int(self._clock() * 1000),
                paused,
                sources.unavailable,
                tracker.spooled,
                tracker.not_spooled,
                {"accepted": intake.accepted, "refused": intake.refused} if intake is not None else None,
                asdict(health),
                sources.used,
                watchers.status() if watchers is not None else None,
            )
            try:
                home.status_file.write_text(json.dumps(asdict(status)))
            except OSError as exc:
                log.debug("cannot write %s: %s", home.status_file, exc)

        def connect() -> DeviceIngest:
            return DeviceIngest(enrollment.server, load_credentials(home))

        stop_uploading = threading.Event()
        threads = [
            threading.Thread(
                target=run_uploader,
                name="uploader",
                args=(spool, connect, stop_uploading),
                kwargs={
                    "reconnect": reconnect,
                    "batch_size": settings.upload_batch,
                    "wake": new_intervals,
                    "health": health,
                    "on_gone": retire,
                },
                daemon=True,
            ),
            threading.Thread(target=Upkeep(home, settings, reconnect).run, name="upkeep", args=(stop,), daemon=True),
            threading.Thread(
                target=PrivacySync(home, settings, tracker).run, name="privacy", args=(stop,), daemon=True
            ),
        ]
        if watchers is not None:
            forward = watchers.forwarder.run
            threads.append(threading.Thread(target=forward, name="activitywatch", args=(stop,), daemon=True))
        if settings.show_notices:
            threads.append(
                threading.Thread(target=NoticeSync(home, settings).run, name="notices", args=(stop,), daemon=True)
            )
        log.info(
            "collector running: device %s of %s, gateway %s, spool %s (%d waiting)",
            enrollment.device_id,
            enrollment.user_id,
            enrollment.server,
            home.spool_file,
            spool.depth,
        )
        for thread in threads:
            thread.start()
        try:
            run_tracking(
                tracker,
                sources,
                stop,
                sample_s=settings.sample_seconds,
                paused=lambda: is_paused(home, int(self._clock() * 1000)),
                urls=urls,
                clock=self._clock,
                on_tick=report,
            )
        finally:
            stop.set()
            # The interval closed at stop is on disk; give the uploader a moment to deliver it and anything else
            # waiting, so a collector stopped while online leaves nothing behind. Offline, it stays for next time.
            deadline = time.monotonic() + DRAIN_AT_STOP_S
            while spool.depth and time.monotonic() < deadline and threads[0].is_alive():
                time.sleep(0.05)
            stop_uploading.set()
            new_intervals.set()
            for thread in threads:
                thread.join(35)
            sources.stop()
            if intake is not None:
                intake.stop()
            if watchers is not None:
                watchers.stop()
            report(False, now=True)
            depth = spool.depth
            spool.close()
            if gone:
                self._retire(enrollment, gone[0], depth)
            lock.release()
            if not gone:
                log.info("collector stopped; %d intervals wait in the spool", depth)

    def _retire(self, enrollment: Enrollment, reason: str, depth: int) -> None:
        """The gateway refused this device for good: nothing recorded can be delivered, so nothing is kept. The
        credentials and the spool go; `retired.json` says why, for `status`, until the next enrollment."""
        forget_device(self.home)
        forget_recording(self.home)
        record = {
            "reason": reason,
            "at_ms": int(self._clock() * 1000),
            "device_id": enrollment.device_id,
            "server": enrollment.server,
            "dropped": depth,
        }
        write_atomically(self.home.retired_file, json.dumps(record).encode())
        log.error(
            "collector stopped for good: the gateway at %s refused device %s (%s); %d intervals that can no "
            "longer be delivered were removed with its credentials; enroll again to record",
            enrollment.server,
            enrollment.device_id,
            reason,
            depth,
        )

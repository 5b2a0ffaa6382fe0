"""Realistic activity, as the collector records it: the one data generator of the benchmarks and the query tests
(docs/benchmarks.md, "The data").

A person (`Person`) works about `weekday_hours` active hours on a weekday (spread by a normal law, 6 to 13 hours),
on some weekend days a few hours, in stretches of 25 to 110 minutes with breaks of 5 to 60 minutes between them.
In a stretch the window in front changes every ~19 s on average (exponential); half the changes stay in the
app (another file, another tab: in a browser mostly on the same site), the others go to one of 40 apps with a long
tail (Zipf); two browsers take about a third of the time, each visit on one of 400 sites, again a long tail. Titles
come from the person's documents and pages: now and then a new one, mostly one seen lately (a Zipf law over how
recently), which gives tens of thousands of distinct titles a year. Keys and clicks are Poisson counts at each
app's own rate. The collector's cuts are kept: an interval ends when the window changes and at most every 60 s
(collector/intervals.py `IntervalRules.max_interval_ms`), intervals of a device follow each other without gaps in
a stretch, a short break is idle time (idle intervals of at most 60 s, as the collector records them) and a long
one is either idle too or a gap (the computer suspended). A day is spent on one of the person's devices, some
stretches on another.

Pure and seeded: the same person, days and end give the same frame. Vectorised with numpy: a person's year (about
half a million to a million intervals) takes a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from collector.intervals import event_id

MAX_INTERVAL_MS = 60_000  # collector/intervals.py IntervalRules.max_interval_ms
MEAN_FOCUS_S = 19.0  # ActivityWatch's window events of a real year average about this
BROWSERS = ("firefox", "Google-chrome")
APPS = (
    "Code", "firefox", "Google-chrome", "gnome-terminal", "Slack", "thunderbird", "zoom", "Spotify",
    "libreoffice-writer", "evince", "org.gnome.Nautilus", "obsidian", "discord", "signal-desktop",
    "org.telegram.desktop", "org.keepassxc.KeePassXC", "jetbrains-pycharm", "postman", "dbeaver", "vlc",
    "libreoffice-calc", "gimp", "inkscape", "org.gnome.Calculator", "org.gnome.TextEditor", "kate", "konsole",
    "okular", "blender", "krita", "teams-for-linux", "notion-app", "figma-linux", "element-desktop",
    "virt-manager", "wireshark", "emacs", "steam", "libreoffice-impress", "org.gnome.Calendar",
)  # fmt: skip
KNOWN_SITES = (
    "github.com", "docs.python.org", "mail.google.com", "stackoverflow.com", "youtube.com", "en.wikipedia.org",
    "news.ycombinator.com", "google.com", "calendar.google.com", "reddit.com", "docs.google.com", "linkedin.com",
)  # fmt: skip
SITES = KNOWN_SITES + tuple(f"site{n:03d}.example.org" for n in range(400 - len(KNOWN_SITES)))
# Keys and clicks a second of focus, per app (a long tail again: the first apps are typed in most).
_KEY_RATE = np.linspace(2.2, 0.1, len(APPS))
_CLICK_RATE = np.linspace(0.25, 0.05, len(APPS))
NEW_TITLE_SHARE = 0.06  # the share of window changes that open a document or page not seen before
STAY_IN_APP = 0.5
STAY_ON_SITE = 0.6
IDLE_AFTER_S = 180  # collector: idle after 3 min without input


@dataclass(frozen=True)
class Person:
    user_id: str
    seed: int
    devices: tuple[str, ...] = ("laptop", "desktop")
    weekday_hours: float = 10.0
    weekend_share: float = 0.35  # the share of weekend days with some use

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError(f"{self.user_id}: a person needs at least one device")
        if not 0 < self.weekday_hours <= 16:
            raise ValueError(f"{self.user_id}: weekday_hours must be in (0, 16], got {self.weekday_hours}")


def _zipf_weights(n: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return weights / weights.sum()


_APP_WEIGHTS = _zipf_weights(len(APPS), 1.05)
_APP_WEIGHTS[[APPS.index(b) for b in BROWSERS]] *= 3.0  # browsers: about a third of the time
_APP_WEIGHTS /= _APP_WEIGHTS.sum()
_SITE_WEIGHTS = _zipf_weights(len(SITES), 1.0)
_IS_BROWSER = np.isin(np.array(APPS), BROWSERS)


def _stretches(rng: np.random.Generator, person: Person, days: int, first_day_ms: int) -> list[tuple[int, int, int]]:
    """(start ms, length ms, break after ms) of every stretch of work, day by day."""
    out = []
    for day in range(days):
        day_ms = first_day_ms + day * 86_400_000
        weekday = datetime.fromtimestamp(day_ms / 1000, UTC).weekday()
        if weekday < 5:
            hours = float(np.clip(rng.normal(person.weekday_hours, 1.2), 0.6 * person.weekday_hours, 13))
        elif rng.random() < person.weekend_share:
            hours = float(rng.uniform(1, 5))
        else:
            continue
        at = day_ms + int((8 + rng.normal(0, 0.7)) * 3_600_000)
        left = int(hours * 3_600_000)
        while left > 0:
            length = min(left, int(rng.uniform(25, 110) * 60_000))
            pause = int(rng.uniform(5, 60) * 60_000)
            out.append((at, length, pause))
            at += length + pause
            left -= length
    return out


def person_intervals(person: Person, days: int, until: datetime) -> pd.DataFrame:
    """The intervals a person's collectors record in the `days` whole days (UTC) before `until`'s day.

    Columns: user_id, device_id, device_seq, event_id, start and end (ms since the epoch), app, title, url (the
    browser tab's URL, None elsewhere), site (what the worker keeps of it), keystrokes, clicks, idle."""
    rng = np.random.default_rng(person.seed)
    first_day = datetime.combine((until.astimezone(UTC) - timedelta(days=days)).date(), datetime.min.time(), UTC)
    stretches = _stretches(rng, person, days, int(first_day.timestamp() * 1000))
    main_device = rng.integers(0, len(person.devices), days)  # each day's own computer
    parts = []
    first_ms = int(first_day.timestamp() * 1000)
    for at, length, pause in stretches:
        day = (at - first_ms) // 86_400_000
        device = int(main_device[min(day, days - 1)])
        if len(person.devices) > 1 and rng.random() < 0.1:
            device = int(rng.integers(0, len(person.devices)))
        parts.append(_stretch(rng, at, length, pause, device))
    frame = pd.DataFrame(
        {key: np.concatenate([p[key] for p in parts]) if parts else np.array([], dtype=np.int64) for key in _KEYS}
    )
    return _named(rng, person, frame)


_KEYS = ("start", "end", "app", "first", "doc", "site", "keystrokes", "clicks", "idle", "device")


def _last_false(flags: np.ndarray) -> np.ndarray:
    """For each position, the last position at or before it whose flag is False (flags[0] must be False)."""
    return np.maximum.accumulate(np.where(flags, 0, np.arange(len(flags))))


def _stretch(rng: np.random.Generator, at: int, length: int, pause: int, device: int) -> dict[str, np.ndarray]:
    n = int(length / 1000 / MEAN_FOCUS_S * 1.5) + 20
    focus = (rng.exponential(MEAN_FOCUS_S, n) * 1000 + 1000).astype(np.int64)
    while focus.sum() < length:
        focus = np.concatenate([focus, (rng.exponential(MEAN_FOCUS_S, n) * 1000 + 1000).astype(np.int64)])
    ends = np.cumsum(focus)
    keep = int(np.searchsorted(ends, length)) + 1
    ends = np.minimum(ends[:keep], length)
    starts = np.concatenate([[0], ends[:-1]])
    # Half the window changes stay in the app (another file, another tab), and in a browser most of those on the site.
    stay = rng.random(keep) < STAY_IN_APP
    stay[0] = False
    apps = rng.choice(len(APPS), keep, p=_APP_WEIGHTS)[_last_false(stay)]
    on_site = stay & (rng.random(keep) < STAY_ON_SITE)
    sites = np.where(_IS_BROWSER[apps], rng.choice(len(SITES), keep, p=_SITE_WEIGHTS)[_last_false(on_site)], -1)
    docs = rng.random(keep) < NEW_TITLE_SHARE  # new-document flags; numbered in `_named`, person-wide
    # The collector cuts at most every MAX_INTERVAL_MS.
    pieces = np.maximum(1, -(-(ends - starts) // MAX_INTERVAL_MS))
    index = np.repeat(np.arange(keep), pieces)
    offset = np.arange(len(index)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    p_start = starts[index] + offset * MAX_INTERVAL_MS
    p_end = np.minimum(p_start + MAX_INTERVAL_MS, ends[index])
    seconds = (p_end - p_start) / 1000
    app = apps[index]
    first_piece = offset == 0
    out = {
        "start": at + p_start,
        "end": at + p_end,
        "app": app,
        "first": first_piece,  # a window's first piece: where its title is chosen
        "doc": np.where(first_piece, docs[index], False),
        "site": sites[index],
        "keystrokes": rng.poisson(_KEY_RATE[app] * seconds),
        "clicks": rng.poisson(_CLICK_RATE[app] * seconds),
        "idle": np.zeros(len(index), dtype=bool),
        "device": np.full(len(index), device),
    }
    # The break: idle time in front of the last window (after IDLE_AFTER_S, cut back to the last input), or a gap.
    if pause >= IDLE_AFTER_S * 1000 and (pause <= 15 * 60_000 or rng.random() < 0.4):
        idle_n = -(-pause // MAX_INTERVAL_MS)
        i_start = at + length + np.arange(idle_n) * MAX_INTERVAL_MS
        i_end = np.minimum(i_start + MAX_INTERVAL_MS, at + length + pause)
        zeros = np.zeros(idle_n, dtype=np.int64)
        idle = {
            "start": i_start,
            "end": i_end,
            "app": np.full(idle_n, app[-1]),
            "first": np.zeros(idle_n, dtype=bool),
            "doc": np.zeros(idle_n, dtype=bool),
            "site": np.full(idle_n, out["site"][-1]),
            "keystrokes": zeros,
            "clicks": zeros,
            "idle": np.ones(idle_n, dtype=bool),
            "device": np.full(idle_n, device),
        }
        out = {key: np.concatenate([out[key], idle[key]]) for key in _KEYS}
    return out


def _named(rng: np.random.Generator, person: Person, frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    # A document belongs to an app (a page to a site): per app or site, a new one where flagged, otherwise one of
    # its own seen lately (how lately: a Zipf law). A window keeps its title for all its pieces and the idle time
    # after it: each first piece's document, carried on.
    first_piece = frame["first"].to_numpy(dtype=bool)
    site_index = frame["site"].to_numpy()
    owner = np.where(site_index >= 0, len(APPS) + site_index, frame["app"].to_numpy())
    new = frame["doc"].to_numpy(dtype=bool)
    opened = pd.Series(new.astype(np.int64)).groupby(owner).cumsum().to_numpy()
    back = np.minimum(rng.zipf(1.6, n) - 1, opened)
    doc = np.where(new, opened, opened - back)
    carried = np.maximum.accumulate(np.where(first_piece, np.arange(n), 0))
    doc = doc[carried]
    app_names = np.array(APPS, dtype=object)[frame["app"].to_numpy()]
    site_names = np.where(site_index >= 0, np.array(SITES, dtype=object)[np.maximum(site_index, 0)], "")
    titles = [
        f"{s} — page {d}" if s else f"{a} — document {d}" for a, s, d in zip(app_names, site_names, doc, strict=True)
    ]
    urls = [f"https://{s}/p/{d}?ref=home" if s else None for s, d in zip(site_names, doc, strict=True)]
    devices = np.array([f"{person.user_id}-{d}" for d in person.devices], dtype=object)[frame["device"].to_numpy()]
    order = np.lexsort((frame["start"].to_numpy(), frame["device"].to_numpy()))
    out = pd.DataFrame(
        {
            "user_id": person.user_id,
            "device_id": devices,
            "start": frame["start"].to_numpy(dtype=np.int64),
            "end": frame["end"].to_numpy(dtype=np.int64),
            "app": app_names,
            "title": titles,
            "url": urls,
            "site": site_names,
            "keystrokes": frame["keystrokes"].to_numpy(dtype=np.uint32),
            "clicks": frame["clicks"].to_numpy(dtype=np.uint32),
            "idle": frame["idle"].to_numpy(dtype=bool),
        }
    ).iloc[order]
    out["device_seq"] = out.groupby("device_id").cumcount().astype(np.uint64)
    # Minted as the collector mints them (collector/intervals.py event_id): a run per collector start, here one a
    # day per device (a computer started in the morning).
    day = out["start"].to_numpy() // 86_400_000
    started, each = pd.MultiIndex.from_arrays([out["device_id"].to_numpy(), day]).factorize()
    runs = rng.integers(0, 2**63, len(each), dtype=np.int64)[started]
    out["event_id"] = [event_id(int(r), int(q)) for r, q in zip(runs, out["device_seq"], strict=True)]
    return out.sort_values(["start", "device_id"], kind="stable").reset_index(drop=True)


def crowd(n: int, seed: int = 100) -> list[Person]:
    """n other people, each realistic and each different: part-timers to long days, one to three devices."""
    rng = np.random.default_rng(seed)
    people = []
    for k in range(n):
        devices = ("laptop", "desktop", "work")[: int(rng.integers(1, 4))]
        hours = float(rng.choice([4.0, 6.0, 8.0, 9.0, 10.0, 11.0]))
        people.append(Person(f"person-{k:03d}", seed + 1 + k, devices, hours, float(rng.uniform(0.1, 0.6))))
    return people


def describe(frame: pd.DataFrame) -> dict[str, float | int]:
    """What a frame of intervals looks like: the figures a benchmark's "data" gives and the tests check."""
    active = frame[~frame["idle"]]
    days = pd.to_datetime(active["start"], unit="ms", utc=True).dt.date
    per_person_days = active.assign(day=days).groupby("user_id")["day"].nunique().sum()
    return {
        "people": int(frame["user_id"].nunique()),
        "devices": int(frame["device_id"].nunique()),
        "intervals": len(frame),
        "active_hours_per_day_used": float(
            round(float((active["end"] - active["start"]).sum()) / 3.6e6 / per_person_days, 1)
        )
        if per_person_days
        else 0.0,
        "idle_share": round(float(frame["idle"].mean()), 3) if len(frame) else 0.0,
        "apps_per_person": int(frame.groupby("user_id")["app"].nunique().mean()) if len(frame) else 0,
        "sites_per_person": int(frame[frame["site"] != ""].groupby("user_id")["site"].nunique().mean())
        if (frame["site"] != "").any()
        else 0,
        "titles_per_person": int(frame.groupby("user_id")["title"].nunique().mean()) if len(frame) else 0,
    }


def warehouse_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the worker stores it in `intervals` (warehouse/writes.py INTERVAL_COLUMNS), received when it
    ended."""
    from warehouse.writes import INTERVAL_COLUMNS

    stored = frame.assign(
        start=pd.to_datetime(frame["start"], unit="ms", utc=True),
        end=pd.to_datetime(frame["end"], unit="ms", utc=True),
    )
    stored["received_at"] = stored["end"]
    return stored[list(INTERVAL_COLUMNS)]


def wire_intervals(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows as ActivityInterval dicts, as a collector sends them (one device's rows in order)."""
    columns = ["event_id", "device_seq", "start", "end", "app", "title", "url", "keystrokes", "clicks", "idle"]
    rows = frame[columns].to_dict("records")
    for row in rows:
        row["device_seq"], row["start"], row["end"] = int(row["device_seq"]), int(row["start"]), int(row["end"])
        row["keystrokes"], row["clicks"], row["idle"] = int(row["keystrokes"]), int(row["clicks"]), bool(row["idle"])
        row["url"] = row["url"] if isinstance(row["url"], str) else None  # pandas keeps a missing URL as NaN
    return rows


def people_intervals(people: Sequence[Person], days: int, until: datetime) -> pd.DataFrame:
    return pd.concat([person_intervals(p, days, until) for p in people], ignore_index=True)


def store(client, frame: pd.DataFrame, progress=lambda message: None) -> None:
    """The frame stored as the worker stores it: raw intervals, app and focus sessions (the sessionizer over each
    device's rows) with each device's saved sessionizer state, both rollups rebuilt from raw (warehouse/rollups.py),
    and the devices as enrolled."""
    from stream_jobs.rows import session_rows
    from stream_jobs.sessionize import SessionRules, advance
    from warehouse.rollups import rebuild_user_span
    from warehouse.writes import (
        APP_SESSION_COLUMNS,
        FOCUS_SESSION_COLUMNS,
        NO_DELETIONS,
        store_device_states,
        store_rows,
        upsert_devices,
    )

    rows = warehouse_rows(frame)
    for part in range(0, len(rows), 250_000):
        client.insert_df("intervals", rows.iloc[part : part + 250_000])
    progress(f"stored {len(rows):,} intervals")
    rules = SessionRules()
    columns = ["user_id", "device_id", "event_id", "device_seq", "start", "end", "app", "title", "site",
               "keystrokes", "clicks", "idle"]  # fmt: skip
    for device_id, rows_of in frame.groupby("device_id", sort=False):
        result = advance(None, rows_of[columns].to_dict("records"), rules)
        for table, names, sessions in (
            ("app_sessions", APP_SESSION_COLUMNS, result.app_sessions),
            ("focus_sessions", FOCUS_SESSION_COLUMNS, result.focus_sessions),
        ):
            store_rows(client, NO_DELETIONS, table, names, session_rows(sessions, names))
        state = json.dumps(result.state.to_dict())
        store_device_states(
            client, NO_DELETIONS, [(str(rows_of["user_id"].iloc[0]), str(device_id), result.state.last_seq, state)]
        )
    progress(f"stored the sessions of {frame['device_id'].nunique()} devices")
    for user_id, rows_of in frame.groupby("user_id", sort=False):
        first = datetime.fromtimestamp(int(rows_of["start"].min()) / 1000, UTC)
        after = datetime.fromtimestamp(int(rows_of["end"].max()) / 1000, UTC)
        rebuild_user_span(client, str(user_id), first, after)
    progress(f"rebuilt the rollups of {frame['user_id'].nunique()} people")
    pairs = frame[["user_id", "device_id"]].drop_duplicates().itertuples(index=False)
    upsert_devices(
        client, [(user, device, device.rsplit("-", 1)[-1].title(), "Linux", "6.1", False) for user, device in pairs]
    )


def _runs(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Maximal runs of rows that follow one another without a gap and agree on `keys`: start, end and the keys."""
    starts, ends = frame["start"].to_numpy(), frame["end"].to_numpy()
    new = np.ones(len(frame), dtype=bool)
    new[1:] = starts[1:] != ends[:-1]
    for key in keys:
        values = frame[key].to_numpy()
        new[1:] |= values[1:] != values[:-1]
    run = np.cumsum(new)
    grouped = frame.groupby(run, sort=False)
    return pd.DataFrame({"start": grouped["start"].first(), "end": grouped["end"].last()} | {
        key: grouped[key].first() for key in keys
    })  # fmt: skip


def _aw_events(runs: pd.DataFrame, data: Sequence[dict]) -> list[dict]:
    stamps = pd.to_datetime(runs["start"].to_numpy(), unit="ms", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    seconds = (runs["end"].to_numpy() - runs["start"].to_numpy()) / 1000
    return [{"timestamp": at, "duration": float(s), "data": d} for at, s, d in zip(stamps, seconds, data, strict=True)]


def activitywatch_export(frame: pd.DataFrame, hostname: str) -> dict:
    """One device's intervals as ActivityWatch's watchers would have recorded them, in aw-server's export format:
    the window watcher's events (a window in front from its first to its last piece, idle or not: the window
    watcher does not know idle), the AFK watcher's (not-afk where the person was active, afk where idle; nothing in
    a gap, when the computer slept) and the web watcher's of each browser (a tab's URL while in front). So
    ActivityWatch's time per app (window events intersected with not-afk) is the frame's active time per app."""
    if frame["device_id"].nunique() != 1:
        raise ValueError("an ActivityWatch export is one device's: give the frame of one device_id")
    frame = frame.sort_values("start")
    first = pd.Timestamp(int(frame["start"].min()), unit="ms", tz="UTC").isoformat()
    window = _runs(frame, ["app", "title"])
    afk = _runs(frame, ["idle"])
    buckets = {
        f"aw-watcher-window_{hostname}": ("currentwindow", "aw-watcher-window", _aw_events(
            window, [{"app": a, "title": t} for a, t in zip(window["app"], window["title"], strict=True)])),
        f"aw-watcher-afk_{hostname}": ("afkstatus", "aw-watcher-afk", _aw_events(
            afk, [{"status": "afk" if idle else "not-afk"} for idle in afk["idle"]])),
    }  # fmt: skip
    for browser, name in (("Google-chrome", "chrome"), ("firefox", "firefox")):
        tabs = _runs(frame[frame["app"] == browser], ["url", "title"])
        data = [
            {"url": u, "title": t, "audible": False, "incognito": False}
            for u, t in zip(tabs["url"], tabs["title"], strict=True)
        ]
        buckets[f"aw-watcher-web-{name}_{hostname}"] = (
            "web.tab.current",
            f"aw-watcher-web-{name}",
            _aw_events(tabs, data),
        )
    return {
        "buckets": {
            bucket_id: {
                "id": bucket_id,
                "created": first,
                "name": None,
                "type": kind,
                "client": client,
                "hostname": hostname,
                "data": {},
                "events": events,
            }  # fmt: skip
            for bucket_id, (kind, client, events) in buckets.items()
        }
    }

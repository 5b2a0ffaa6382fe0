"""Where the collector keeps its state on a workstation, and its typed, validated configuration.

Everything lives under one owner-only directory, the collector home: `PRODUCTIMON_COLLECTOR_HOME`, else the
platform's per-user data directory. Settings come from `PRODUCTIMON_COLLECTOR_*` environment variables, then
`<home>/config.toml` (written by the user; exclusion rules only there), then the defaults below.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

from collector.privacy import ExclusionRule, PrivacySettings
from plumbing.files import make_private_dir
from schemas.compat import tomllib


class CollectorConfigError(Exception):
    """A configuration value is missing or invalid; the message names it."""


def default_home() -> Path:
    """The per-user data directory each platform expects an agent's state in."""
    explicit = os.environ.get("PRODUCTIMON_COLLECTOR_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "Productimon" / "Collector"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Productimon Collector"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "productimon-collector"


@dataclass(frozen=True)
class CollectorHome:
    """The files of one collector installation. The directory is owner-only: it holds the device key and
    activity data waiting to be sent."""

    root: Path

    @classmethod
    def default(cls) -> CollectorHome:
        return cls(default_home())

    def create(self) -> CollectorHome:
        make_private_dir(self.root)
        return self

    @cached_property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @cached_property
    def credentials_dir(self) -> Path:
        """ca.crt, device.crt, device.key: the layout `collector.transport.DeviceCredentials.from_dir` reads."""
        return self.root / "credentials"

    @cached_property
    def identity_file(self) -> Path:
        """user_id and device_id the gateway gave at enrollment (JSON)."""
        return self.root / "identity.json"

    @cached_property
    def spool_file(self) -> Path:
        return self.root / "spool.sqlite3"

    @cached_property
    def paused_file(self) -> Path:
        """Present while tracking is paused (`pause`); the running collector looks for it every sample."""
        return self.root / "paused"

    @cached_property
    def privacy_file(self) -> Path:
        """The account's privacy choices as last fetched from the gateway (JSON), applied while offline too."""
        return self.root / "account_privacy.json"

    @cached_property
    def status_file(self) -> Path:
        """What the running collector last reported about itself (JSON), for `status`."""
        return self.root / "status.json"

    @cached_property
    def retired_file(self) -> Path:
        """Left when the gateway refused this device for good (revoked, or its account deleted): why and when
        (JSON), for `status`; the credentials and the spool are gone then. Removed by the next `enroll`."""
        return self.root / "retired.json"

    @cached_property
    def lock_file(self) -> Path:
        """Held by the running collector, so two of them never share a spool and a device_seq."""
        return self.root / "run.lock"

    @cached_property
    def browser_secret_file(self) -> Path:
        """The per-install secret a browser report must carry to reach this collector."""
        return self.root / "browser-secret"

    @cached_property
    def activitywatch_file(self) -> Path:
        """What ActivityWatch watchers reported to the compatible API (SQLite), until forwarded."""
        return self.root / "activitywatch.sqlite3"

    @cached_property
    def activitywatch_forward_file(self) -> Path:
        """Until when the watchers' events are forwarded to the gateway (JSON)."""
        return self.root / "activitywatch-forwarded.json"

    @cached_property
    def browser_intake_file(self) -> Path:
        """Where the running collector's loopback browser intake listens (JSON: host, port)."""
        return self.root / "browser-intake.json"


@dataclass(frozen=True)
class CollectorSettings:
    """The collector's settings. A plain dataclass checked by hand rather than pydantic: the collector runs all
    day on people's computers within a 60 MB memory budget, and pydantic alone costs about 20 MB of it."""

    # The gateway's addresses and the device's name are chosen at `enroll` and kept in identity.json. A name set
    # here renames the device: the collector sends it to the gateway at its next start.
    device_name: str | None = None

    # Tracking (docs/design.md "Event contract"; docs/collector.md).
    sample_seconds: float = 1.0
    idle_after_seconds: float = 180.0
    max_interval_seconds: float = 60.0
    capture_titles: bool = True
    # Wayland only: count keys and clicks from the input devices (/dev/input), which needs the user in the
    # `input` group, i.e. able to read every keyboard of the machine (docs/collector.md "Wayland"). Off: no counts.
    count_input_devices: bool = False
    # Exclusion rules: tables with pattern, on ("app" or "title"), action ("hide_title" or "drop_details").
    exclude: tuple[ExclusionRule, ...] = ()

    # Delivery.
    spool_max_mb: float = 200.0
    upload_batch: int = 500
    # Renew the device certificate once less than this share of its lifetime is left.
    renew_at_remaining: float = 1 / 3

    # Browser URL capture: the loopback port the extension's native host reports to (0: any free port).
    browser_intake_port: int = 0
    # A browser report is used for this long after it arrived; the extension repeats itself more often.
    browser_report_max_age_seconds: float = 15.0

    # Goal notices (docs/dashboard.md "Notices"): switched on per goal in the dashboard; this device asks for the
    # ones due this often and shows them with the desktop's notification service. Off: this device never shows any.
    show_notices: bool = True
    notices_every_seconds: float = 30.0

    # ActivityWatch watchers (docs/activitywatch.md "Watchers"): serve the part of ActivityWatch's REST API they use,
    # on 127.0.0.1 only, and forward what they report as this device's history. Off by default; watchers expect
    # port 5600.
    activitywatch_api: bool = False
    activitywatch_api_port: int = 5600
    activitywatch_forward_seconds: float = 30.0

    def privacy(self) -> PrivacySettings:
        return PrivacySettings(capture_titles=self.capture_titles, rules=self.exclude)

    @property
    def spool_max_bytes(self) -> int:
        return int(self.spool_max_mb * 1024 * 1024)


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    above_low: bool = False  # the low bound itself is refused ("more than 0")

    def problem(self, number: float) -> str | None:
        if not math.isfinite(number):
            return "must be a finite number"
        if (number <= self.low if self.above_low else number < self.low) or number > self.high:
            lowest = f"more than {self.low:g}" if self.above_low else f"at least {self.low:g}"
            return f"must be {lowest} and at most {self.high:g}"
        return None


_RANGES: dict[str, _Range] = {
    "sample_seconds": _Range(0, 60, above_low=True),
    "idle_after_seconds": _Range(0, 86400, above_low=True),
    "max_interval_seconds": _Range(0, 3600, above_low=True),
    "spool_max_mb": _Range(0, 100_000, above_low=True),
    "upload_batch": _Range(1, 5000),
    "renew_at_remaining": _Range(0, 0.99, above_low=True),
    "browser_intake_port": _Range(0, 65535),
    "activitywatch_api_port": _Range(0, 65535),
    "browser_report_max_age_seconds": _Range(0, 600, above_low=True),
    "notices_every_seconds": _Range(1, 3600),
    "activitywatch_forward_seconds": _Range(1, 3600),
}
_KINDS: dict[str, type] = {f.name: f.type for f in fields(CollectorSettings)}  # annotations are strings here
ENV_PREFIX = "PRODUCTIMON_COLLECTOR_"


def _value(name: str, raw: object) -> object:
    """One setting from TOML (typed) or the environment (text), converted and range-checked."""
    kind = _KINDS[name]
    if name == "exclude":
        if not isinstance(raw, list) or not all(isinstance(rule, dict) for rule in raw):
            raise ValueError("must be a list of tables with pattern, on and action ([[exclude]] in TOML)")
        rules = []
        for rule in raw:
            unknown = set(rule) - {"pattern", "on", "action"}
            if unknown or "pattern" not in rule:
                raise ValueError(f"each rule needs pattern, on and action (got {sorted(rule)})")
            rules.append(ExclusionRule(str(rule["pattern"]), rule.get("on", "title"), rule.get("action", "hide_title")))
        return tuple(rules)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"must be true or false, not {raw!r}")
    if kind == "str | None":
        text = str(raw).strip()
        if not text:
            raise ValueError("must not be empty")
        return text
    number_type = int if kind == "int" else float
    if isinstance(raw, bool) or (number_type is int and isinstance(raw, float)):
        raise ValueError(f"must be {'a whole number' if number_type is int else 'a number'}, not {raw!r}")
    try:
        number = number_type(raw)
    except (TypeError, ValueError):
        raise ValueError(f"must be {'a whole number' if number_type is int else 'a number'}, not {raw!r}") from None
    problem = _RANGES[name].problem(number)
    if problem:
        raise ValueError(f"{problem}, not {raw!r}")
    return number


def load_collector_settings(home: CollectorHome, env: Mapping[str, str] | None = None) -> CollectorSettings:
    """`PRODUCTIMON_COLLECTOR_*` environment variables over `<home>/config.toml` over the defaults; a bad value
    is one readable line naming it."""
    env = os.environ if env is None else env
    try:
        with open(home.config_file, "rb") as file:
            from_file = tomllib.load(file)
    except FileNotFoundError:
        from_file = {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CollectorConfigError(f"cannot read {home.config_file}: {exc}") from None
    unknown = sorted(set(from_file) - set(_KINDS))
    if unknown:
        raise CollectorConfigError(f"{home.config_file}: unknown setting {unknown[0]!r}")
    # A mistyped variable would otherwise be silently ignored; exclusion rules are tables, only in the file.
    env_names = {ENV_PREFIX + name.upper() for name in _KINDS if name != "exclude"} | {ENV_PREFIX + "HOME"}
    unknown = sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in env_names)
    if unknown:
        raise CollectorConfigError(f"unknown collector setting in the environment: {unknown[0]}")
    values: dict[str, object] = {}
    for name in _KINDS:
        source, raw = home.config_file, from_file.get(name)
        if ENV_PREFIX + name.upper() in env_names and ENV_PREFIX + name.upper() in env:
            source, raw = ENV_PREFIX + name.upper(), env[ENV_PREFIX + name.upper()]
        if raw is None:
            continue
        try:
            values[name] = _value(name, raw)
        except ValueError as exc:
            raise CollectorConfigError(f"collector setting {name!r} ({source}): {exc}") from None
    return CollectorSettings(**values)

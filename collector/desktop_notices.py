"""Desktop notices on Linux: one notice shown by the desktop's own notification service, the freedesktop Desktop
Notifications spec's `org.freedesktop.Notifications` on the session D-Bus (GNOME Shell, KDE Plasma, dunst, mako,
xfce4-notifyd and notification-daemon all serve it), called over jeepney with a deadline.

Summary and body are plain text. Servers that announce "body-markup" read the body as a small subset of HTML, so
`&`, `<` and `>` in it are sent as entities; the summary is plain text by the spec and goes as it is, on one line.
Both are cut to a length a bubble can show.

On Windows (toast notifications, through WinRT) and macOS (Notification Center) the notice goes through
desktop-notifier, the well-kept library for each platform's own API (`show_natively`); the same call is tested here
against the freedesktop service on Linux, where that library speaks D-Bus. Those two platforms themselves cannot
run here (docs/collector.md "Goal notices")."""

from __future__ import annotations

import functools
import html
import logging
import sys
import unicodedata
from typing import Any

from jeepney.wrappers import DBusErrorResponse  # type: ignore[import-untyped]  # jeepney 0.9 ships no types

from collector.sampling import SessionEnded
from collector.wayland.session_bus import SessionBus, describe

APP_NAME = "Productimon"
SUMMARY_LIMIT = 200
BODY_LIMIT = 1000

_SERVICE = "org.freedesktop.Notifications"
_PATH = "/org/freedesktop/Notifications"
_NORMAL_URGENCY = 1
# What the bus answers when nobody owns the name and no .service file could start anyone.
_NO_SERVICE = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
}


class NoticeNotShown(Exception):
    """Why the notice was not shown, in one readable line."""


# Where the platform's own notification service is reached through desktop-notifier, and what it is called there.
NATIVE_SERVICES = {"win32": "Windows notifications", "darwin": "Notification Center"}


def show_notice(summary: str, body: str, timeout_s: float = 2.0) -> int | str:
    """Show one notice; returns the id the notification service gave it. Raises NoticeNotShown."""
    if sys.platform in NATIVE_SERVICES:
        return show_natively(summary, body)
    try:
        bus = SessionBus(timeout_s)
    except RuntimeError as exc:
        raise NoticeNotShown(str(exc)) from None
    arguments: tuple[object, ...] = (
        APP_NAME,
        0,  # replaces no earlier notice
        "",  # no icon
        _one_line(summary),
        html.escape(_plain(body, BODY_LIMIT), quote=False),
        [],  # no actions
        {"urgency": ("y", _NORMAL_URGENCY)},  # no freedesktop category fits a reminder of a limit
        -1,  # the server's own expiry
    )
    try:
        reply = bus.call(_SERVICE, _PATH, _SERVICE, "Notify", "susssasa{sv}i", arguments)
    except TimeoutError:
        raise NoticeNotShown(f"the notification service did not answer within {timeout_s:g} s") from None
    except DBusErrorResponse as exc:
        if exc.name in _NO_SERVICE:
            raise NoticeNotShown(f"no notification service on the session D-Bus (nobody owns {_SERVICE})") from None
        raise NoticeNotShown(f"the notification service refused the notice: {describe(exc)}") from None
    except SessionEnded as exc:
        raise NoticeNotShown(str(exc)) from None
    finally:
        bus.close()
    if len(reply) != 1 or not isinstance(reply[0], int):
        raise NoticeNotShown(f"the notification service answered {reply!r} instead of a notice id")
    return reply[0]


@functools.cache
def _native_notifier() -> Any:
    from desktop_notifier import DesktopNotifierSync  # type: ignore[import-not-found,unused-ignore]  # win32, darwin

    return DesktopNotifierSync(app_name=APP_NAME, app_icon=None)


def show_notice_natively_on(service: str, notifier: Any, summary: str, body: str) -> str:
    """One notice through desktop-notifier's `notifier`; `service` names the platform's service in a refusal.

    The library never raises for a notice that was not shown: it logs the failure and calls `on_dispatched` only
    for one that was. Both are watched here, so a notice not shown is NoticeNotShown, with the platform's reason."""
    from desktop_notifier import Urgency  # type: ignore[import-not-found,unused-ignore]

    dispatched: list[bool] = []
    failures = _Failures()
    library_log = logging.getLogger("desktop_notifier")
    library_log.addHandler(failures)
    propagates, library_log.propagate = library_log.propagate, False  # its traceback is not the collector's log
    try:
        # Toasts and Notification Center show the text as text: no markup to escape, only control characters.
        identifier = notifier.send(
            title=_one_line(summary),
            message=_plain(body, BODY_LIMIT),
            urgency=Urgency.Normal,
            on_dispatched=lambda: dispatched.append(True),
        )
    except Exception as exc:  # the library raises its platform's own errors
        raise NoticeNotShown(f"{service} refused the notice: {type(exc).__name__}: {exc}") from None
    finally:
        library_log.removeHandler(failures)
        library_log.propagate = propagates
    if not dispatched:
        raise NoticeNotShown(f"{service} refused the notice: {failures.reason or 'no reason given'}")
    return str(identifier)


class _Failures(logging.Handler):
    """The reason of the last failure desktop-notifier logged, in one line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason = ""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"{type(exc).__name__}: {exc}" if exc is not None else record.getMessage()
        self.reason = " ".join(text.split())


def show_natively(summary: str, body: str) -> str:
    """One notice through this platform's own notification service (Windows, macOS)."""
    service = NATIVE_SERVICES.get(sys.platform, "the desktop's notification service")
    return show_notice_natively_on(service, _native_notifier(), summary, body)


def _one_line(summary: str) -> str:
    return _plain(summary, SUMMARY_LIMIT).replace("\n", " ").replace("\t", " ").strip()


def _plain(text: str, limit: int) -> str:
    """The text without control characters (but newlines and tabs) or lone surrogates, cut to `limit` characters."""
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def why_no_notices(timeout_s: float = 2.0) -> str | None:
    """None when a notification service is on the session D-Bus, or the bus can start one; otherwise why not, in
    one line. Asked before any notice is fetched, so a notice is never taken for a desktop that cannot show it."""
    if sys.platform in NATIVE_SERVICES:
        return why_not_natively(NATIVE_SERVICES[sys.platform], _native_notifier)
    try:
        bus = SessionBus(timeout_s)
    except RuntimeError as exc:
        return str(exc)
    try:
        if bus.owner(_SERVICE) is not None:
            return None
        (activatable,) = bus.call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListActivatableNames"
        )
        if _SERVICE in activatable:
            return None
        return f"no notification service on the session D-Bus (nobody owns {_SERVICE})"
    except (TimeoutError, DBusErrorResponse, SessionEnded) as exc:
        return f"the session D-Bus did not answer: {describe(exc)}"
    finally:
        bus.close()


def why_not_natively(service: str, notifier: Any) -> str | None:
    """None when the platform's service lets Productimon show notices (asking the person the first time, where
    the platform asks); otherwise why not, in one line. `notifier` makes desktop-notifier's notifier."""
    try:
        allowed = notifier().has_authorisation() or notifier().request_authorisation()
    except Exception as exc:
        return f"{service} cannot be reached: {type(exc).__name__}: {exc}"
    return None if allowed else f"notifications from Productimon are turned off in {service}'s settings"

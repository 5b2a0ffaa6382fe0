"""Desktop notices on Linux: one notice shown by the desktop's own notification service, the freedesktop Desktop
Notifications spec's `org.freedesktop.Notifications` on the session D-Bus (GNOME Shell, KDE Plasma, dunst, mako,
xfce4-notifyd and notification-daemon all serve it), called over jeepney with a deadline.

Summary and body are plain text. Servers that announce "body-markup" read the body as a small subset of HTML, so
`&`, `<` and `>` in it are sent as entities; the summary is plain text by the spec and goes as it is, on one line.
Both are cut to a length a bubble can show. Windows (toast notifications) and macOS (Notification Center) are not
built."""

from __future__ import annotations

import html
import unicodedata

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


def show_notice(summary: str, body: str, timeout_s: float = 2.0) -> int:
    """Show one notice; returns the id the notification service gave it. Raises NoticeNotShown."""
    try:
        bus = SessionBus(timeout_s)
    except RuntimeError as exc:
        raise NoticeNotShown(str(exc)) from None
    arguments: tuple[object, ...] = (
        APP_NAME,
        0,  # replaces no earlier notice
        "",  # no icon
        _plain(summary, SUMMARY_LIMIT).replace("\n", " ").replace("\t", " ").strip(),
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


def _plain(text: str, limit: int) -> str:
    """The text without control characters (but newlines and tabs) or lone surrogates, cut to `limit` characters."""
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def why_no_notices(timeout_s: float = 2.0) -> str | None:
    """None when a notification service is on the session D-Bus, or the bus can start one; otherwise why not, in
    one line. Asked before any notice is fetched, so a notice is never taken for a desktop that cannot show it."""
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

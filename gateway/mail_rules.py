"""Notice e-mails, pure: one goal notice or weekly summary as a message ready for SMTP.

Every message carries its one-click unsubscribe link twice: in `List-Unsubscribe` with `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (RFC 8058: a mail program's "unsubscribe" button POSTs to it, no sign-in), and in the
text for a person to open (the page it shows asks for one click before anything changes, because mail scanners
open links on their own). RFC 8058 also wants the message DKIM-signed over those two headers: that is the
operator's outgoing relay's work (docs/dashboard.md "Notices"). `Auto-Submitted: auto-generated` (RFC 3834) keeps
out-of-office replies away. Text only, no tracking of any kind: no images, no per-reader links but the
unsubscribe link.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import urlencode

from warehouse.notice_rules import WEEKLY_GOAL_ID, Notice

SUBJECT_LIMIT = 200


def unsubscribe_link(base: str, token: str) -> str:
    return f"{base}?{urlencode({'t': token})}"


def notice_email(notice: Notice, to: str, sender: str, link: str, now: datetime) -> EmailMessage:
    """The e-mail of one notice (a goal's, or the weekly summary) to `to`, with `link` to stop such e-mails."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = _one_line(notice.summary)
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid("notice", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message["List-Unsubscribe"] = f"<{link}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if notice.goal_id == WEEKLY_GOAL_ID:
        why = "You get this weekly summary because you switched it on in Productimon's Goals page."
        stop = "Stop the weekly summary with one click"
    else:
        why = "You get this because you switched on e-mail notices for this goal in Productimon's Goals page."
        stop = "Stop e-mail notices of this goal with one click"
    message.set_content(f"{notice.body}\n\n-- \n{why}\n{stop}: {link}\n")
    return message


def _one_line(text: str) -> str:
    """A header's text: control characters (line breaks among them) as spaces, cut to SUBJECT_LIMIT."""
    flat = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch for ch in text).strip()
    return flat if len(flat) <= SUBJECT_LIMIT else flat[: SUBJECT_LIMIT - 1] + "…"

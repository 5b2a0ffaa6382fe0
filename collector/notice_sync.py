"""Goal notices on this desktop: every `notices_every_seconds`, when the desktop has a notification service, ask
the gateway over mTLS for the account's desktop notices now due and show each (collector/desktop_notices.py).

Which goals notify, and when, is the account's choice on the server (warehouse/notice_rules.py); the gateway hands
each notice out once, so with several devices it appears on the first that asks. Nothing is asked for while the
desktop has no notification service, so no notice is taken for a desktop that cannot show it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.config import CollectorHome, CollectorSettings
from collector.desktop_notices import NoticeNotShown, show_notice, why_no_notices
from collector.enrolled import load_credentials, load_enrollment
from collector.enrollment import take_notices
from collector.wire import RpcError, rpc_reason

log = logging.getLogger(__name__)


@dataclass
class NoticeSync:
    home: CollectorHome
    settings: CollectorSettings
    show: Callable[[str, str], int | str] = show_notice
    unavailable: Callable[[], str | None] = why_no_notices
    shown: int = 0
    _said: str = field(default="", repr=False)  # the last problem logged, so a lasting one is said once

    def once(self) -> None:
        why = self.unavailable()
        if why is not None:
            self._say(f"goal notices are not shown on this desktop: {why}")
            return
        enrollment = load_enrollment(self.home)
        for summary, body in take_notices(enrollment.server, load_credentials(self.home)):
            try:
                self.show(summary, body)
                self.shown += 1
                log.info("goal notice shown: %s", summary)
            except NoticeNotShown as exc:
                log.warning("a goal notice could not be shown (%s): %s", exc, summary)
        self._said = ""

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.notices_every_seconds):
            try:
                self.once()
            except RpcError as exc:
                self._say(f"could not ask for goal notices ({rpc_reason(exc)}); asking again later")
            except Exception as exc:  # never the end of the collector
                self._say(f"could not ask for goal notices ({type(exc).__name__}: {exc})")

    def _say(self, line: str) -> None:
        if line != self._said:
            self._said = line
            log.warning("%s", line)

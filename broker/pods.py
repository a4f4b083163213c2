"""What the broker knows of each running camera pod: its link, last status and HTTP port."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from fastapi import WebSocket

from detector.contract.pods import Displays, StreamReport

log = logging.getLogger(__name__)
REPORT_STALE_S = 5.0


@dataclass
class PodLink:
    name: str
    socket: WebSocket
    report: StreamReport | None = None
    reported_at: float = 0.0
    displays: Displays | None = None  # the display subscriptions last sent to this pod


@dataclass
class PodRegistry:
    links: dict[str, PodLink] = field(default_factory=dict)
    # Times each pod's process started again, seen from its reports (a metric; see ``update``).
    restarts: dict[str, int] = field(default_factory=dict)
    _last: dict[str, StreamReport] = field(default_factory=dict)  # each pod's latest report, across its links

    def attach(self, name: str, socket: WebSocket) -> PodLink:
        link = PodLink(name, socket)
        self.links[name] = link
        return link

    def detach(self, link: PodLink) -> None:
        if self.links.get(link.name) is link:
            del self.links[link.name]

    def update(self, link: PodLink, report: StreamReport) -> None:
        """A pod reports when its process started: a new start time is a process that started again (a crash, a
        kill, a replacement), not a link that only dropped. Pods from before ``started_at`` count their frames and
        reconnects from 0, so a new link whose first report counts fewer than the last report is one too."""
        last = self._last.get(link.name)
        if last is not None and last.started_at is not None and report.started_at is not None:
            restarted = report.started_at != last.started_at
        else:
            restarted = last is not None and link.report is None and (
                report.frames < last.frames or report.reconnects < last.reconnects)
        if restarted:
            self.restarts[link.name] = self.restarts.get(link.name, 0) + 1
            log.warning("camera pod restarted", extra={"pod": link.name, "restarts": self.restarts[link.name]})
        link.report, link.reported_at = report, time.monotonic()
        self._last[link.name] = report

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what is remembered of pods no longer running (a camera added again starts from 0)."""
        kept = set(keep)
        self.restarts = {name: count for name, count in self.restarts.items() if name in kept}
        self._last = {name: report for name, report in self._last.items() if name in kept}

    def status(self, name: str) -> StreamReport | None:
        link = self.links.get(name)
        if link is None or link.report is None or time.monotonic() - link.reported_at > REPORT_STALE_S:
            return None
        return link.report

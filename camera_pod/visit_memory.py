"""The visit each display last announced, on local disk: a restarted pod does not announce the same car twice."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from camera_pod.visits import AnnouncedVisit
from detector.kit.files import write_atomically

log = logging.getLogger(__name__)


class RememberedVisit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visit_id: str
    fields: dict[str, str]
    last_seen: float
    box: tuple[int, int, int, int] | None = None  # absent in files of older versions


class VisitFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    displays: dict[str, RememberedVisit] = {}


class VisitMemory:
    """Written when the announced visit changes, and at most every ``min_interval_s`` while it goes on."""

    def __init__(self, path: Path, *, min_interval_s: float = 1.0) -> None:
        self.path = path
        self.min_interval_s = min_interval_s
        self._state = self._read()
        self._written_at: dict[str, float] = {}

    def _read(self) -> VisitFile:
        try:
            return VisitFile.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return VisitFile()
        except (OSError, ValidationError) as exc:
            log.error("visit memory unreadable; starting without it", extra={"error": f"{type(exc).__name__}"})
            return VisitFile()

    def recall(self, display: str) -> AnnouncedVisit | None:
        remembered = self._state.displays.get(display)
        if remembered is None:
            return None
        return AnnouncedVisit(remembered.visit_id, dict(remembered.fields), remembered.last_seen, remembered.box)

    def remember(self, display: str, visit: AnnouncedVisit | None, now: float) -> None:
        if visit is None:
            return
        before = self._state.displays.get(display)
        changed = before is None or (before.visit_id, before.fields) != (visit.visit_id, visit.fields)
        if not changed and now - self._written_at.get(display, 0.0) < self.min_interval_s:
            return
        self._state.displays[display] = RememberedVisit(visit_id=visit.visit_id, fields=visit.fields,
                                                        last_seen=visit.last_seen, box=visit.box)
        self._written_at[display] = now
        self._write()

    def _write(self) -> None:
        try:
            write_atomically(self.path, self._state.model_dump_json().encode())
        except OSError as exc:
            log.error("visit memory not written", extra={"error": f"{type(exc).__name__}: {exc}"})

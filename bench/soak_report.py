"""The soak's report: its JSON document (pydantic models), the growth and event figures, the targets, Markdown."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bench import common

RSS_GROWTH_TARGET_PCT = 5.0
FD_GROWTH_TARGET_PCT = 5.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessStat(_Model):
    role: Literal["worker", "pod"]
    name: str
    pid: int
    rss_mb: float
    fds: int
    cpu_cores: float  # since the previous sample


class Sample(_Model):
    minute: float  # when it was due: minutes since every camera was first online
    elapsed_s: float  # when it was taken
    rss_mb: float  # worker + camera pods
    fds: int  # worker + camera pods
    cpu_cores: float  # worker + camera pods, since the previous sample
    harness_cpu_cores: float  # this script and its RTSP servers
    machine_cpu_cores: float  # everything on the machine, other work included
    events_received: int  # imageDetection messages so far, duplicates included
    events_produced: int  # visit events the pods counted so far
    event_age_max_s: float | None  # oldest imageDetection of this interval: receipt time - capture time
    pods: int
    cameras_online: int  # in the latest stateReport
    stream_reconnects: int  # sum of the pods' detector_stream_reconnects
    online_flips: int  # online -> offline transitions seen in stateReports so far
    pod_restarts: int
    outbox_events: int  # events waiting for the broker's ack, live pods
    action_outbox_items: int  # Redis/PostgreSQL writes waiting on disk, live pods
    processes: list[ProcessStat]


class SubscriptionEvents(_Model):
    produced: int
    received: int
    unique: int
    duplicates: int
    lost: int
    unexpected: int  # received and never counted as produced (a pod died between two scrapes)


class Events(_Model):
    produced: int  # the pods' detector_events_total{kind="visit"} (what becomes an imageDetection)
    produced_logged: int  # the pods' "detection" log lines of new visits: a second count that survives restarts
    updates_produced: int  # improved results of announced visits: sent only as patchSession, never without a session
    received: int
    unique: int  # distinct (subscriptionIdentifier, timestamp)
    duplicates: int
    lost: int
    unexpected: int
    video_visits: int  # ≈ visits the cameras showed from minute 0 to the last sample (4 per 27 s loop per camera)
    postgres_rows: int | None  # car_frontal_info rows the run's displays wrote
    per_subscription: dict[str, SubscriptionEvents]


class Growth(_Model):
    baseline_minute: float
    last_minute: float
    rss_pct: float
    fd_pct: float


class Reconnects(_Model):
    stream: int  # camera-stream reconnects inside the pods
    online_flips: int
    backend: int  # backend WebSocket reconnects made by this script
    pod_restarts: int


class Shutdown(_Model):
    worker_exit_code: int | None
    worker_stop_s: float
    orphans: list[int]  # camera pod pids still running after the worker exited


class Check(_Model):
    name: str
    value: float
    target: str
    passed: bool


class Camera(_Model):
    identifier: str
    kind: Literal["rtsp", "snapshot"]


class SoakReport(_Model):
    started_at: str
    settings: dict[str, Any]
    cameras: list[Camera]
    samples: list[Sample]
    events: Events
    growth: Growth | None
    reconnects: Reconnects
    shutdown: Shutdown
    log_problems: dict[str, int]  # warning/error log messages of the worker and pods, by message
    checks: list[Check]
    passed: bool


def growth(samples: list[Sample], warmup_min: float) -> Growth | None:
    """From the first sample at or after the warm-up (models loaded, caches filled) to the last sample."""
    after = [s for s in samples if s.minute >= warmup_min - 0.005]  # minutes are rounded to 2 decimals
    if len(after) < 2:
        return None
    first, last = after[0], after[-1]
    return Growth(baseline_minute=first.minute, last_minute=last.minute,
                  rss_pct=_pct(first.rss_mb, last.rss_mb), fd_pct=_pct(first.fds, last.fds))


def _pct(before: float, after: float) -> float:
    return (after - before) / before * 100 if before else 0.0


def tally(produced: dict[str, int], received: list[tuple[str, str]], **totals: Any) -> Events:
    """Produced vs received per subscription; a duplicate is a (subscription, timestamp) received again."""
    counts = Counter(received)
    per: dict[str, SubscriptionEvents] = {}
    for subscription in sorted(set(produced) | {s for s, _ in received}):
        got = [n for (s, _), n in counts.items() if s == subscription]
        made, unique = produced.get(subscription, 0), len(got)
        per[subscription] = SubscriptionEvents(produced=made, received=sum(got), unique=unique,
                                               duplicates=sum(got) - unique, lost=max(0, made - unique),
                                               unexpected=max(0, unique - made))
    return Events(produced=sum(produced.values()), received=len(received), unique=len(counts),
                  duplicates=len(received) - len(counts), lost=sum(p.lost for p in per.values()),
                  unexpected=sum(p.unexpected for p in per.values()), per_subscription=per, **totals)


def checks(events: Events, grown: Growth | None, shutdown: Shutdown) -> list[Check]:
    found = [
        Check(name="events lost", value=events.lost, target="0", passed=events.lost == 0),
        Check(name="events received twice", value=events.duplicates, target="0", passed=events.duplicates == 0),
        Check(name="events received", value=events.unique, target="> 0", passed=events.unique > 0),
        Check(name="orphan camera pods", value=len(shutdown.orphans), target="0", passed=not shutdown.orphans),
    ]
    if grown is not None:
        found += [Check(name=f"RSS growth % (minute {grown.baseline_minute:g} → {grown.last_minute:g})",
                        value=round(grown.rss_pct, 2), target=f"< {RSS_GROWTH_TARGET_PCT:g}",
                        passed=grown.rss_pct < RSS_GROWTH_TARGET_PCT),
                  Check(name=f"fd growth % (minute {grown.baseline_minute:g} → {grown.last_minute:g})",
                        value=round(grown.fd_pct, 2), target=f"< {FD_GROWTH_TARGET_PCT:g}",
                        passed=grown.fd_pct < FD_GROWTH_TARGET_PCT)]
    return found


def markdown(report: SoakReport) -> str:
    rows = [(f"{s.minute:g}", round(s.rss_mb, 1), s.fds, round(s.cpu_cores, 2), round(s.machine_cpu_cores, 2),
             s.events_received, f"{s.cameras_online}/{len(report.cameras)}", s.stream_reconnects,
             "—" if s.event_age_max_s is None else round(s.event_age_max_s, 1)) for s in report.samples]
    samples = common.table(
        "Soak: samples", ["minute", "RSS MB", "fds", "CPU cores", "machine CPU cores", "events received",
                          "online", "stream reconnects", "event age max s"], rows,
        ["Minute 0: every camera online. RSS, fds and CPU: the worker and its camera pods together; CPU since the "
         "previous sample (at minute 0: since the subscription list was sent, i.e. start-up); machine CPU includes "
         "everything else running. Event age: receipt time − capture time of the visit's best frame."])
    e, r, g = report.events, report.reconnects, report.growth
    lines = [f"- cameras: {len(report.cameras)} ({_kinds(report.cameras)}), {report.settings['fps']:g} fps each, "
             f"{report.settings['duration_min']:g} min",
             f"- events: produced {e.produced} (logged {e.produced_logged}), received {e.received}, unique "
             f"{e.unique}, lost {e.lost}, duplicates {e.duplicates}, unexpected {e.unexpected}; PostgreSQL rows "
             f"{e.postgres_rows}; improved results (sent only with a session) {e.updates_produced}",
             f"- visits detected from minute 0 to the last sample: {_measured(report.samples)} of ≈ {e.video_visits} "
             "the cameras showed",
             f"- reconnects: streams {r.stream}, online→offline flips {r.online_flips}, backend {r.backend}, "
             f"pod restarts {r.pod_restarts}",
             f"- shutdown: worker exit {report.shutdown.worker_exit_code} after {report.shutdown.worker_stop_s:.1f} s, "
             f"orphan camera pods {len(report.shutdown.orphans)}"]
    if g is None:
        lines.append("- growth: not enough samples after the warm-up")
    else:
        lines.append(f"- growth from minute {g.baseline_minute:g} (after the warm-up) to minute {g.last_minute:g}: "
                     f"RSS {g.rss_pct:+.2f} %, fds {g.fd_pct:+.2f} %")
    if report.log_problems:
        lines.append("- log warnings/errors: " + ", ".join(f"{m!r} × {n}" for m, n in report.log_problems.items()))
    verdict = common.table("Soak: targets", ["check", "value", "target", "pass"],
                           [(c.name, int(c.value) if c.value.is_integer() else c.value, c.target,
                             "yes" if c.passed else "**no**") for c in report.checks])
    return f"{samples}\n" + "\n".join(lines) + f"\n\n{verdict}\n**{'PASS' if report.passed else 'FAIL'}**\n"


def _measured(samples: list[Sample]) -> int:
    return samples[-1].events_produced - samples[0].events_produced if samples else 0


def _kinds(cameras: list[Camera]) -> str:
    counts = Counter(c.kind for c in cameras)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))

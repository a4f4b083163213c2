"""The soak script, run as a user runs it for one minute with two cameras, and its accounting.

The run is real (``detector run``, an RTSP and a snapshot camera, Redis and PostgreSQL); its JSON report is
read back through the report's own model. The accounting tests feed the tally and growth functions cases
where an event is lost, received twice or unexpected, so a soak that loses events cannot report 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import soak_report
from bench.soak_report import Growth, Sample, SoakReport

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_one_minute_soak_with_two_cameras(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-P", str(REPO / "bench" / "soak.py"), "--duration-min", "1",
                           "--sample-s", "10", "--cameras", "2", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=540, check=False)
    assert out.is_file(), done.stderr[-3000:]
    result = SoakReport.model_validate_json(out.read_text())
    assert done.returncode == (0 if result.passed else 1)
    assert "### Soak: samples" in done.stdout and "### Soak: targets" in done.stdout

    assert sorted(c.kind for c in result.cameras) == ["rtsp", "snapshot"]
    assert [s.minute for s in result.samples] == pytest.approx([n / 6 for n in range(7)], abs=0.01)
    for sample in result.samples:
        assert sample.pods == 2 and sample.cameras_online == 2, sample
        assert sample.rss_mb > 100 and sample.fds > 10, sample
        assert {p.role for p in sample.processes} == {"worker", "pod"}
    assert result.samples[-1].cpu_cores > 0

    events = result.events
    assert events.unique > 0, "no imageDetection reached the backend"
    assert set(events.per_subscription) == {c.identifier for c in result.cameras}, "a camera sent nothing"
    assert events.lost == 0 and events.duplicates == 0 and events.unexpected == 0, events
    assert events.produced == events.produced_logged == events.unique
    assert events.postgres_rows is not None and 0 < events.postgres_rows <= events.produced
    assert result.shutdown.orphans == []
    assert result.reconnects.stream == 0 and result.reconnects.pod_restarts == 0
    assert result.growth is not None and result.growth.baseline_minute >= 1 / 3 - 0.01


def test_the_tally_counts_lost_duplicate_and_unexpected_events() -> None:
    produced = {"a;1": 3, "b;2": 2}
    received = [("a;1", "t1"), ("a;1", "t2"), ("a;1", "t2"), ("b;2", "t1"), ("b;2", "t2"), ("c;3", "t1")]
    events = soak_report.tally(produced, received, produced_logged=5, updates_produced=0, video_visits=5,
                               postgres_rows=None)
    assert (events.produced, events.received, events.unique) == (5, 6, 5)
    assert events.per_subscription["a;1"].lost == 1 and events.per_subscription["a;1"].duplicates == 1
    assert events.per_subscription["c;3"].unexpected == 1
    assert (events.lost, events.duplicates, events.unexpected) == (1, 1, 1)
    shutdown = soak_report.Shutdown(worker_exit_code=0, worker_stop_s=1.0, orphans=[])
    failed = {c.name for c in soak_report.checks(events, None, shutdown) if not c.passed}
    assert failed == {"events lost", "events received twice"}


def _sample(minute: float, rss_mb: float, fds: int) -> Sample:
    return Sample(minute=minute, elapsed_s=minute * 60, rss_mb=rss_mb, fds=fds, cpu_cores=0.1, harness_cpu_cores=0,
                  machine_cpu_cores=0.5, events_received=0, events_produced=0, event_age_max_s=None, pods=1,
                  cameras_online=1, stream_reconnects=0, online_flips=0, pod_restarts=0, outbox_events=0,
                  action_outbox_items=0, processes=[])


def test_growth_is_measured_from_the_end_of_the_warm_up() -> None:
    samples = [_sample(0, 500, 40), _sample(5, 1000, 100), _sample(30, 1030, 100), _sample(60, 1060, 106)]
    assert soak_report.growth(samples, 5) == Growth(baseline_minute=5, last_minute=60, rss_pct=6.0, fd_pct=6.0)
    assert soak_report.growth(samples, 61) is None
    shutdown = soak_report.Shutdown(worker_exit_code=0, worker_stop_s=1.0, orphans=[4242])
    events = soak_report.tally({"a;1": 1}, [("a;1", "t")], produced_logged=1, updates_produced=0, video_visits=1,
                               postgres_rows=1)
    checks = soak_report.checks(events, soak_report.growth(samples, 5), shutdown)
    assert [c.name.split(" (")[0] for c in checks if not c.passed] == ["orphan camera pods", "RSS growth %",
                                                                       "fd growth %"]

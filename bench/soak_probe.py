"""What the soak measures in the running worker: each process's RSS, fds and CPU, and each camera pod's metrics.

Processes are the ``detector run`` worker and its camera pod children (found afresh at every sample, so a
restarted pod is picked up). A pod's counters live in the pod: one that restarts starts again from zero, so the
counters are kept per process id and summed over every process ever seen (a pod's last scrape before it died
is what it counts for). CPU is CPU seconds used between two samples ÷ the wall time between them, in cores.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.soak_report import ProcessStat
from detector.contract.environment import POD_SPEC_ENV
from detector.contract.pods import PodSpec

_GAUGES = {"detector_stream_reconnects": "reconnects", "detector_stream_frames": "frames",
           "detector_stream_decode_errors": "decode_errors", "detector_stream_dropped_frames": "dropped_frames",
           "detector_outbox_events": "outbox_events", "detector_action_outbox_items": "action_outbox_items",
           "detector_action_outbox_dead_total": "action_outbox_dead",
           "detector_action_outbox_dropped_total": "action_outbox_dropped",
           "detector_pipeline_seconds_sum": "pipeline_seconds", "detector_pipeline_seconds_count": "pipeline_passes"}


@dataclass
class PodCounters:
    """One pod process's metrics at its last scrape."""

    name: str
    events: dict[tuple[str, str], int] = field(default_factory=dict)  # (subscription, visit|update) -> count
    values: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def update(self, exposition: str) -> None:
        values: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == "detector_events_total":
                    self.events[(sample.labels["subscription"], sample.labels["kind"])] = int(sample.value)
                elif sample.name in _GAUGES:
                    values[_GAUGES[sample.name]] += sample.value  # summed over labels (services, displays)
        self.values = values


def pod_name(process: psutil.Process) -> str:
    """The pod's name from the PodSpec the local runner hands it in its environment (the URL is never kept)."""
    try:
        return PodSpec.model_validate_json(process.environ()[POD_SPEC_ENV]).name
    except (KeyError, ValueError, psutil.Error):
        return f"pid-{process.pid}"


def listening_port(process: psutil.Process) -> int | None:
    try:
        for connection in process.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr:
                return int(connection.laddr.port)
    except psutil.Error:
        pass
    return None


@dataclass
class Probe:
    worker_pid: int
    harness_pids: list[int] = field(default_factory=list)
    pods: dict[int, PodCounters] = field(default_factory=dict)  # every pod process seen, by pid
    live_pods: list[int] = field(default_factory=list)
    _cpu: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds at the last sample
    _processes: dict[int, psutil.Process] = field(default_factory=dict)
    _last: float = field(default_factory=time.monotonic)

    def pod_processes(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.worker_pid).children()
        except psutil.NoSuchProcess:
            return []
        pods = []
        for child in children:
            try:
                if "camera_pod" in child.cmdline():
                    pods.append(self._processes.setdefault(child.pid, child))
            except psutil.Error:
                continue
        return pods

    def seen_pods(self) -> list[psutil.Process]:
        """Every pod process seen so far (a dead one's handle says so: ``is_running`` checks its start time)."""
        return [self._processes[pid] for pid in self.pods if pid in self._processes]

    def start(self) -> None:
        """Marks the start of the first interval: CPU is counted from here (a pod started later, all its life)."""
        self._processes[self.worker_pid] = psutil.Process(self.worker_pid)
        for process in [self._processes[self.worker_pid], *self._owned(), *self.pod_processes()]:
            self._cpu_delta(process)
        psutil.cpu_percent(None)
        self._last = time.monotonic()

    async def sample(self, http: httpx.AsyncClient) -> tuple[list[ProcessStat], float, float, float]:
        """Per-process stats, then product, harness and whole-machine CPU in cores since the last sample."""
        now = time.monotonic()
        elapsed = max(1e-6, now - self._last)
        self._last = now
        stats: list[ProcessStat] = []
        pods = self.pod_processes()
        self.live_pods = [p.pid for p in pods]
        for role, process in [("worker", self._processes[self.worker_pid]), *[("pod", p) for p in pods]]:
            stat = self._stat(role, process, elapsed)
            if stat is not None:
                stats.append(stat)
        for process in pods:
            await self._scrape(http, process)
        harness = sum(self._cpu_delta(p) for p in self._owned()) / elapsed
        machine = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
        return stats, sum(s.cpu_cores for s in stats), harness, machine

    def _owned(self) -> list[psutil.Process]:
        owned = []
        for pid in [os.getpid(), *self.harness_pids]:
            try:
                owned.append(self._processes.setdefault(pid, psutil.Process(pid)))
            except psutil.NoSuchProcess:
                continue
        return owned

    def _stat(self, role: str, process: psutil.Process, elapsed: float) -> ProcessStat | None:
        try:
            with process.oneshot():
                name = "worker" if role == "worker" else self._pod(process).name
                return ProcessStat(role=role, name=name, pid=process.pid, rss_mb=process.memory_info().rss / 2**20,
                                   fds=process.num_fds(), cpu_cores=self._cpu_delta(process) / elapsed)
        except psutil.Error:
            return None

    def _pod(self, process: psutil.Process) -> PodCounters:
        if process.pid not in self.pods:
            self.pods[process.pid] = PodCounters(pod_name(process))
        return self.pods[process.pid]

    def _cpu_seconds(self, process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    def _cpu_delta(self, process: psutil.Process) -> float:
        try:
            now = self._cpu_seconds(process)
        except psutil.Error:
            return 0.0
        before = self._cpu.get(process.pid, 0.0)
        self._cpu[process.pid] = now
        return max(0.0, now - before)

    async def _scrape(self, http: httpx.AsyncClient, process: psutil.Process) -> None:
        port = listening_port(process)
        if port is None:
            return
        try:
            response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            self._pod(process).update(response.text)

    async def scrape_all(self, http: httpx.AsyncClient) -> None:
        """Refresh every live pod's counters (no process stats): the drain loop's view."""
        pods = self.pod_processes()
        self.live_pods = [p.pid for p in pods]
        for process in pods:
            await self._scrape(http, process)

    # ---- totals over every pod process ever seen ------------------------------------------------

    def produced(self, kind: str = "visit") -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for counters in self.pods.values():
            for (subscription, event_kind), count in counters.events.items():
                if event_kind == kind:
                    totals[subscription] += count
        return dict(totals)

    def total(self, name: str, live_only: bool = False) -> float:
        return sum(c.values.get(name, 0.0) for pid, c in self.pods.items() if not live_only or pid in self.live_pods)

    def restarts(self) -> int:
        """Pod processes seen beyond one per pod name."""
        return len(self.pods) - len({c.name for c in self.pods.values()})

"""The local runner remembers what it runs, so a restarted broker brings its cameras back by itself."""

from __future__ import annotations

import stat
from pathlib import Path

from broker.planning import plan
from broker.runners.local import LocalRunner, _Child
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.pods import PodSpec
from tests.broker.test_service import subscription


class StartNothing(LocalRunner):
    """A local runner whose pods are recorded, not started as processes (this test is about what is remembered)."""

    def __init__(self, state_file: Path) -> None:
        super().__init__(state_file=state_file)
        self.started: list[str] = []

    def _start(self, spec: PodSpec) -> None:
        self.started.append(spec.name)
        self._children[spec.name] = _Child(spec)


async def test_what_runs_is_remembered_privately_and_read_back(tmp_path: Path) -> None:
    state = tmp_path / "broker" / "pods.json"
    specs = plan([subscription("d1;cam", url="rtsp://admin:Secret9@cam/1")], BrokerSettings())
    await StartNothing(state_file=state).apply(specs)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600, "stream URLs carry passwords: owner only"
    assert await LocalRunner(state_file=state).recover() == specs
    assert await LocalRunner().recover() == {}, "no state file, nothing remembered"


async def test_an_unreadable_state_file_means_starting_with_nothing(tmp_path: Path) -> None:
    state = tmp_path / "pods.json"
    state.write_text("{not json")
    assert await LocalRunner(state_file=state).recover() == {}


async def test_a_restarted_broker_starts_the_remembered_cameras_before_any_backend(tmp_path: Path) -> None:
    state = tmp_path / "pods.json"
    settings = BrokerSettings()
    before = Broker(settings, StartNothing(state_file=state))
    await before.reconcile([subscription("d1;cam"), subscription("d2;cam", url="rtsp://cam-2/stream")])
    runner = StartNothing(state_file=state)
    after = Broker(settings, runner)
    await after.restore()
    assert sorted(runner.started) == sorted(before.runner.running())
    assert set(after.subscriptions) == {"d1;cam", "d2;cam"}

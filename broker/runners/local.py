"""Camera pods as child processes of the broker (the embedded default), restarted with backoff."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from detector.contract.environment import POD_SPEC_ENV
from detector.contract.pods import PodSpec, StreamReport
from detector.kit.files import write_atomically

log = logging.getLogger(__name__)
_SPECS: TypeAdapter[dict[str, PodSpec]] = TypeAdapter(dict[str, PodSpec])


@dataclass
class _Child:
    spec: PodSpec
    process: asyncio.subprocess.Process | None = None
    supervisor: asyncio.Task[None] | None = None
    restarts: int = 0
    stopping: bool = False


@dataclass
class LocalRunner:
    max_backoff_s: float = 30.0
    stop_timeout_s: float = 10.0
    # Added to the broker's own environment for every pod (e.g. the auth token from a config file).
    environment: dict[str, str] = field(default_factory=dict)
    # What runs, remembered across broker restarts (mode 0600: stream URLs carry credentials); None: nothing.
    state_file: Path | None = None
    _children: dict[str, _Child] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def running(self) -> dict[str, PodSpec]:
        return {name: child.spec for name, child in self._children.items()}

    async def apply(self, specs: dict[str, PodSpec]) -> None:
        async with self._lock:
            for name in [n for n, child in self._children.items()
                         if n not in specs or child.spec.digest() != specs[n].digest()]:
                await self._stop(name)
            for name, spec in specs.items():
                if name not in self._children:
                    self._start(spec)
                else:
                    self._children[name].spec = spec  # same pod; only what the broker echoes may differ
            self._remember(specs)

    async def recover(self) -> dict[str, PodSpec]:
        """Child processes die with the broker: what they ran is read back from ``state_file`` (nothing runs
        yet; the broker re-plans and applies it, so its pods resend what their outboxes still hold)."""
        if self.state_file is None:
            return {}
        try:
            return _SPECS.validate_json(self.state_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValidationError) as exc:
            log.error("remembered camera pods unreadable; starting with none",
                      extra={"file": str(self.state_file), "error": type(exc).__name__})
            return {}

    def _remember(self, specs: dict[str, PodSpec]) -> None:
        if self.state_file is None:
            return
        try:
            write_atomically(self.state_file, _SPECS.dump_json(specs), mode=0o600)
        except OSError as exc:
            log.error("camera pods not remembered; a broker restart will wait for the backend's list",
                      extra={"file": str(self.state_file), "error": f"{type(exc).__name__}: {exc}"})

    async def image_url(self, name: str, report: StreamReport | None) -> str | None:
        if name not in self._children or report is None or not report.http_port:
            return None
        return f"http://127.0.0.1:{report.http_port}/image"

    async def close(self) -> None:
        async with self._lock:
            await asyncio.gather(*(self._stop(name) for name in list(self._children)))

    def pids(self) -> dict[str, int]:
        return {name: child.process.pid for name, child in self._children.items() if child.process}

    def _start(self, spec: PodSpec) -> None:
        child = _Child(spec)
        self._children[spec.name] = child
        child.supervisor = asyncio.create_task(self._supervise(child), name=f"pod-{spec.name}")
        log.info("pod started", extra={"pod": spec.name, "subscriptions": len(spec.subscriptions)})

    async def _supervise(self, child: _Child) -> None:
        while not child.stopping:
            environment = {**os.environ, **self.environment, POD_SPEC_ENV: child.spec.model_dump_json(),
                           "DETECTOR_EXIT_WITH_PARENT": str(os.getpid())}
            child.process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "camera_pod", env=environment, start_new_session=True)
            code = await child.process.wait()
            if child.stopping:
                return
            child.restarts += 1
            delay = random.uniform(0.5, min(self.max_backoff_s, 0.5 * 2 ** min(child.restarts, 6)))
            log.error("pod exited; restarting", extra={"pod": child.spec.name, "code": code,
                                                       "restarts": child.restarts, "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)

    async def _stop(self, name: str) -> None:
        child = self._children.pop(name)
        child.stopping = True
        process = child.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout_s)
            except TimeoutError:
                log.error("pod ignored SIGTERM; killing", extra={"pod": name})
                process.kill()
                await process.wait()
        if child.supervisor is not None:
            child.supervisor.cancel()
            await asyncio.gather(child.supervisor, return_exceptions=True)
        log.info("pod stopped", extra={"pod": name})

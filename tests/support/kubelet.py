"""A kubelet for kmock: runs the Pods that appear in the emulated API server as local processes.

kmock serves objects and nothing else: no scheduler, no kubelet. ``Kubelet`` plays one node for one
namespace, through the API only, the way a kubelet's sync loop does:

- a new Pod: its container's environment is resolved from the manifest (``envFrom.secretRef`` and
  ``env[].value`` / ``env[].valueFrom.secretKeyRef``, the Secrets read through the API and base64-decoded,
  ``env`` winning over ``envFrom`` as in Kubernetes), the process is started and the Pod's status written:
  phase Running, podIP 127.0.0.1, Ready False; Ready turns True once the readiness probe's HTTP path answers
  200 (probed every sync rather than every ``periodSeconds``);
- a Pod that is gone (deleted, or replaced by one of the same name and another uid): SIGTERM, then SIGKILL
  after its ``terminationGracePeriodSeconds``; the exit code is kept in ``exited``;
- a container that exits on its own: its state is written as ``terminated`` (exit code, Ready False) and it
  is not restarted (``restartPolicy`` is not emulated: a crash must fail the test, with its log).

What stands in for the container runtime: the image is this machine's Python environment. The manifest's
command runs with everything up to and including its ``python`` (``/usr/bin/tini -- python``) replaced by
``sys.executable`` (no tini: the process is not PID 1 and gets its signals directly). The image's ``ENV``
is given as ``image_env``; each volume mount is a fresh directory under ``workdir``, and an environment
value that names a mount path is rewritten to that directory (``HOME=/tmp`` → ``<workdir>/<pod>/tmp``).
Every pod IP is 127.0.0.1, so every container gets the same port: ``DETECTOR_POD_HOST``/``DETECTOR_POD_PORT``
are overridden with 127.0.0.1 and ``port``, the probes go to that port, and the node runs one Pod at a
time (a second one stays Pending, unschedulable, until the first is gone). Not emulated: liveness
probes, restarts, ``$(VAR)`` expansion, ``fieldRef``/``resourceFieldRef``, ConfigMaps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

POD_IP = "127.0.0.1"
HOST_ENV, PORT_ENV = "DETECTOR_POD_HOST", "DETECTOR_POD_PORT"
SecretReader = Callable[[str], Mapping[str, str] | None]


class ContainerConfigError(Exception):
    """The container cannot be started as declared (a missing Secret or key): CreateContainerConfigError."""


def resolve_environment(container: Mapping[str, Any], secret: SecretReader) -> dict[str, str]:
    """The container's environment from its manifest: ``envFrom`` first, then ``env`` (later entries win)."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        reference = source.get("secretRef")
        if reference is None:
            raise ContainerConfigError(f"envFrom source not emulated: {sorted(source)}")
        data = secret(reference["name"])
        if data is None:
            if reference.get("optional"):
                continue
            raise ContainerConfigError(f'secret "{reference["name"]}" not found')
        environment.update({source.get("prefix", "") + key: value for key, value in data.items()})
    for variable in container.get("env") or []:
        if "valueFrom" not in variable:
            environment[variable["name"]] = variable.get("value", "")
            continue
        reference = variable["valueFrom"].get("secretKeyRef")
        if reference is None:
            raise ContainerConfigError(f"valueFrom not emulated: {sorted(variable['valueFrom'])}")
        data = secret(reference["name"])
        if data is None or reference["key"] not in data:
            if reference.get("optional"):
                continue
            raise ContainerConfigError(f'couldn\'t find key {reference["key"]} in Secret {reference["name"]}')
        environment[variable["name"]] = data[reference["key"]]
    return environment


def local_command(container: Mapping[str, Any]) -> list[str]:
    """The manifest's command and args, with the image's ``python`` (and the init before it) → this interpreter."""
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    if "python" not in command:
        raise ContainerConfigError(f"only Python commands are emulated, not {command!r}")
    return [sys.executable, *command[command.index("python") + 1:]]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    """One Pod's (single) container, run as a local process."""

    pod: str
    uid: str | None
    name: str
    process: subprocess.Popen[bytes]
    environment: dict[str, str]
    log: Path
    probe_path: str | None
    grace_s: float
    started_at: str = field(default_factory=lambda: _now())
    ready: bool = False
    exit_code: int | None = None

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:] if self.log.exists() else ""


@dataclass
class Kubelet:
    core: k8s.CoreV1Api
    namespace: str
    port: int
    workdir: Path
    image_env: Mapping[str, str] = field(default_factory=dict)
    period_s: float = 0.25
    containers: dict[str, Container] = field(default_factory=dict)  # running, by Pod name
    exited: dict[str, Container] = field(default_factory=dict)  # stopped or crashed, by Pod name
    _blocked: dict[str, str] = field(default_factory=dict)  # Pod name -> why it is not started (last written)

    async def run(self) -> None:
        """The sync loop; ends only when cancelled (then ``close`` stops what still runs)."""
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                try:
                    await self.sync(http)
                except Exception:  # one bad round never stops the node; the next round retries
                    log.exception("kubelet sync failed")
                await asyncio.sleep(self.period_s)

    async def close(self) -> None:
        for name in list(self.containers):
            await self._stop(name)

    async def sync(self, http: httpx.AsyncClient) -> None:
        pods = {pod["metadata"]["name"]: pod for pod in await asyncio.to_thread(self._list_pods)}
        for name, container in list(self.containers.items()):
            pod = pods.get(name)
            if pod is None or pod["metadata"].get("uid") != container.uid:
                await self._stop(name)
            elif container.process.poll() is not None:
                await self._crashed(container)
            else:
                await self._probe(http, container)
        for name, pod in pods.items():
            done = name in self.exited and self.exited[name].uid == pod["metadata"].get("uid")
            if name not in self.containers and not done:
                await self._start(pod)

    # ---- pod lifecycle ----------------------------------------------------------------------------

    async def _start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        (spec,) = pod["spec"]["containers"]
        if self.containers:
            await self._block(name, spec["name"], "Unschedulable",
                              f"the emulated node runs one pod at a time (port {self.port})")
            return
        try:
            command = local_command(spec)
            environment = await asyncio.to_thread(resolve_environment, spec, self._read_secret)
        except ContainerConfigError as exc:
            await self._block(name, spec["name"], "CreateContainerConfigError", str(exc))
            return
        volumes = self._volumes(name, spec)
        environment = {key: _remap(value, volumes) for key, value in
                       {**self.image_env, **environment, HOST_ENV: POD_IP, PORT_ENV: str(self.port)}.items()}
        root = self.workdir / name
        with (root / "container.log").open("wb") as sink:
            process = subprocess.Popen(command, env=environment, cwd=root, stdout=sink, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        probe = ((spec.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
        grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.containers[name] = Container(name, pod["metadata"].get("uid"), spec["name"], process, environment,
                                          root / "container.log", probe, grace)
        self._blocked.pop(name, None)
        log.info("kubelet started pod %s (pid %d)", name, process.pid)
        await self._write_status(name, self._running_status(self.containers[name]))

    async def _probe(self, http: httpx.AsyncClient, container: Container) -> None:
        if container.probe_path is None:
            ready = True
        else:
            try:
                ready = (await http.get(f"http://{POD_IP}:{self.port}{container.probe_path}")).status_code == 200
            except httpx.HTTPError:
                ready = False
        if ready != container.ready:
            container.ready = ready
            await self._write_status(container.pod, self._running_status(container))

    async def _crashed(self, container: Container) -> None:
        container.exit_code = container.process.returncode
        del self.containers[container.pod]
        self.exited[container.pod] = container
        log.error("pod %s exited with %s:\n%s", container.pod, container.exit_code, container.log_tail())
        status = self._running_status(container)
        status["containerStatuses"][0]["state"] = {"terminated": {
            "exitCode": container.exit_code, "reason": "Error" if container.exit_code else "Completed",
            "finishedAt": _now()}}
        await self._write_status(container.pod, status)

    async def _stop(self, name: str) -> None:
        """The Pod is gone: SIGTERM, SIGKILL after the grace period."""
        container = self.containers.pop(name)
        process = container.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, container.grace_s)
            except subprocess.TimeoutExpired:
                log.error("pod %s ignored SIGTERM for %.0f s; killing it", name, container.grace_s)
                process.kill()
                await asyncio.to_thread(process.wait)
        container.exit_code = process.returncode
        self.exited[name] = container
        log.info("kubelet stopped pod %s: exit code %s", name, container.exit_code)

    async def _block(self, name: str, container: str, reason: str, message: str) -> None:
        if self._blocked.get(name) == message:
            return
        self._blocked[name] = message
        if reason == "Unschedulable":
            status: dict[str, Any] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}]}
        else:
            status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                      "containerStatuses": [{"name": container, "ready": False, "restartCount": 0, "image": "",
                                             "imageID": "", "state": {"waiting": {"reason": reason,
                                                                                  "message": message}}}]}
        log.warning("kubelet cannot start pod %s: %s: %s", name, reason, message)
        await self._write_status(name, status)

    # ---- helpers ----------------------------------------------------------------------------------

    def _volumes(self, pod: str, spec: Mapping[str, Any]) -> dict[str, Path]:
        """Each mount path → a fresh local directory (every volume of these pods is an emptyDir)."""
        volumes = {}
        for mount in spec.get("volumeMounts") or []:
            directory = self.workdir / pod / "volumes" / mount["name"]
            directory.mkdir(parents=True, exist_ok=True)
            volumes[mount["mountPath"].rstrip("/")] = directory
        (self.workdir / pod).mkdir(parents=True, exist_ok=True)
        return volumes

    @staticmethod
    def _running_status(container: Container) -> dict[str, Any]:
        ready = "True" if container.ready else "False"
        return {"phase": "Running", "podIP": POD_IP, "hostIP": POD_IP, "podIPs": [{"ip": POD_IP}], "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready}, {"type": "Ready", "status": ready}],
            "containerStatuses": [{"name": container.name, "ready": container.ready, "restartCount": 0,
                                   "image": "", "imageID": "", "started": True,
                                   "state": {"running": {"startedAt": container.started_at}}}]}

    def _list_pods(self) -> list[dict[str, Any]]:
        response: Any = self.core.list_namespaced_pod(self.namespace, _preload_content=False)  # urllib3's
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def _read_secret(self, name: str) -> dict[str, str] | None:
        try:
            response: Any = self.core.read_namespaced_secret(name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = json.loads(response.data).get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    async def _write_status(self, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):  # the Pod was deleted meanwhile: nothing to report on
            await asyncio.to_thread(self.core.patch_namespaced_pod_status, name, self.namespace, {"status": status})


def _remap(value: str, volumes: Mapping[str, Path]) -> str:
    for mount_path, directory in volumes.items():
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(directory) + value[len(mount_path):]
    return value


def host_path(extra: Sequence[str] = ()) -> str:
    """PATH for the "image": this interpreter's bin directory first (the image puts its venv first too)."""
    return os.pathsep.join([*extra, str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])

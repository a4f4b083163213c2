"""The cameras bench's clip: the gas-station video at the cameras' rate, looped, and its ground truth.

The source is tests/fixtures/media/pump.mp4 when it exists (cars arrive, stand most of the time, leave), else
cars.mp4; its ``.json`` lists the visits (first/last frame, brand, body type) and the frame-index strip drawn
along the top edge of every frame. ``prepare`` re-encodes it once at the bench's rate (5 fps: every other frame of
a 10 fps source, H.264, a key frame every 2 s) and repeats it (packets copied) to last a whole trial.

Which visit a camera shows when: the strip of one frame whose capture time is known anchors the camera's clip
clock (``Anchor``); from there a wall-clock time maps to a position in the looped clip, and a visit occurrence is
(loop, visit). ``score`` counts the occurrences that lie wholly in a measuring window and those announced.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench import common
from bench.common import REPO
from bench.soak_cameras import VIDEO_SECONDS, loop_video
from tests.support.servers import SYSTEM_PYTHON, free_port

MEDIA = REPO / "tests" / "fixtures" / "media"
TOLERANCE_S = 0.5  # an announcement this close to a visit's span still counts for it
MOUNTS_SCRIPT = REPO / "tests" / "support" / "rtsp_server.py"  # with --mounts N


def default_video() -> Path:
    pump = MEDIA / "pump.mp4"
    return pump if pump.is_file() and pump.with_suffix(".json").is_file() else MEDIA / "cars.mp4"


@dataclass(frozen=True)
class Visit:
    index: int
    start_s: float  # clip time of its first frame
    end_s: float  # clip time just after its last frame
    brand: str
    body_type: str


@dataclass(frozen=True)
class Strip:
    """The frame-index strip: ``bits`` black/white cells of ``cell_w`` x ``cell_h`` from (x0, y0), MSB first."""

    bits: int
    x0: int
    y0: int
    cell_w: int
    cell_h: int

    def read(self, image: np.ndarray) -> int:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        value = 0
        mx, my = self.cell_w // 4, self.cell_h // 4
        for bit in range(self.bits):
            x1 = self.x0 + bit * self.cell_w
            cell = grey[self.y0 + my:self.y0 + self.cell_h - my, x1 + mx:x1 + self.cell_w - mx]
            value = (value << 1) | int(cell.mean() > 127)
        return value


@dataclass(frozen=True)
class Truth:
    """A clip's ground truth: its frame rate and length (of the source), its visits, its strip."""

    fps: float
    frame_count: int
    visits: tuple[Visit, ...]
    strip: Strip
    size: tuple[int, int]  # (width, height)

    @property
    def loop_s(self) -> float:
        return self.frame_count / self.fps

    @classmethod
    def read(cls, path: Path) -> Truth:
        document = json.loads(path.read_text())
        fps = float(document["fps"])
        visits = tuple(Visit(i, v["first_frame"] / fps, (v["last_frame"] + 1) / fps, v["brand"], v["body_type"])
                       for i, v in enumerate(document["visits"]))
        s = document["frame_index_strip"]
        return cls(fps, int(document["frame_count"]), visits, Strip(s["bits"], s["x0"], s["y0"], s["cell_w"],
                                                                     s["cell_h"]),
                   (int(document["width"]), int(document["height"])))

    def clip_time(self, image: np.ndarray) -> float:
        """Where in the (source) clip a decoded frame is, from its strip."""
        return self.strip.read(image) / self.fps


def reencode(source: Path, target: Path, fps: int) -> Path:
    """``source`` at ``fps`` frames/s: the frame shown at each 1/fps step, H.264 (a key frame every 2 s)."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        output = writer.add_stream("libx264", rate=fps)
        output.width, output.height, output.pix_fmt = stream.width, stream.height, "yuv420p"
        output.gop_size = 2 * fps
        output.options = {"preset": "veryfast", "crf": "23", "bf": "0"}
        taken = 0
        for frame in reader.decode(stream):
            if frame.time is None or frame.time + 1e-6 < taken / fps:
                continue
            image = frame.to_ndarray(format="bgr24")
            new = av.VideoFrame.from_ndarray(image, format="bgr24")
            new.pts, new.time_base = taken, Fraction(1, fps)
            writer.mux(output.encode(new))
            taken += 1
        writer.mux(output.encode(None))
    return target


def rotate(source: Path, target: Path, start_s: float) -> Path:
    """``source`` (packets copied) from its first key frame at or after ``start_s`` to its end, then its beginning:
    the same loop, entered at another point."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        output = writer.add_stream_from_template(stream)
        packets = [p for p in reader.demux(stream) if p.dts is not None and p.pts is not None]
        assert stream.time_base is not None
        cut = next((i for i, p in enumerate(packets) if p.is_keyframe and p.pts * stream.time_base >= start_s), 0)
        length = max(p.pts + (p.duration or 0) for p in packets)  # type: ignore[operator]
        first = packets[cut].pts
        assert first is not None
        for index, packet in enumerate(packets[cut:] + packets[:cut]):
            shift = -first if index < len(packets) - cut else length - first
            packet.pts += shift  # type: ignore[operator]
            packet.dts += shift  # type: ignore[operator]
            packet.stream = output
            writer.mux(packet)
    return target


def prepare(source: Path, workdir: Path, fps: int, seconds: float, phases: int = 1) -> tuple[Path, ...]:
    """The clip at ``fps``, looped to last at least ``seconds``: ``phases`` files, each entering the loop at another
    point (spread evenly over it, to the key frame), for cameras that do not all see a car arrive at once."""
    truth = Truth.read(source.with_suffix(".json"))
    once = reencode(source, workdir / f"clip-{fps}fps.mp4", fps)
    videos = []
    for phase in range(phases):
        entered = rotate(once, workdir / f"clip-{fps}fps-phase{phase}.mp4", phase * truth.loop_s / phases) \
            if phase else once
        # loop_video counts copies in VIDEO_SECONDS (cars.mp4's length): scale so it counts this clip's.
        videos.append(loop_video(entered, workdir / f"clip-{fps}fps-phase{phase}-looped.mp4",
                                 seconds * VIDEO_SECONDS / truth.loop_s))
    return tuple(videos)


@dataclass(frozen=True)
class Setup:
    """What every trial of one bench run shares."""

    videos: tuple[Path, ...]  # the looped clip the RTSP server plays, entered at spread phases (camera i: i % len)
    truth_path: Path
    truth: Truth
    mpta: Path
    cache: Path
    workdir: Path
    fps: int
    seconds: float
    warmup_s: float
    sample_s: float
    limit_s: float
    redis_url: str
    postgres_dsn: str
    pod_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Anchor:
    """A camera's clip clock: the frame captured at ``wall`` (epoch s) showed clip time ``clip``."""

    wall: float
    clip: float

    def position(self, wall: float) -> float:
        """The unrolled clip position (loop k of a visit at t is k * loop + t) of a capture time."""
        return self.clip + (wall - self.wall)


@dataclass
class Tally:
    """One camera's visits in a window: expected occurrences, those announced, and with the right answer."""

    expected: int = 0
    announced: int = 0
    right: int = 0
    stray: int = 0  # announcements that fall in no visit
    missed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.expected > 0 and self.announced == self.expected


def occurrences(truth: Truth, first: float, last: float) -> list[tuple[int, Visit]]:
    """(loop, visit) whose span lies wholly in the unrolled clip positions [first, last]."""
    found = []
    for loop in range(math.floor(first / truth.loop_s) - 1, math.ceil(last / truth.loop_s) + 1):
        base = loop * truth.loop_s
        found += [(loop, v) for v in truth.visits if base + v.start_s >= first and base + v.end_s <= last]
    return found


def locate(truth: Truth, position: float) -> tuple[int, Visit] | None:
    """The (loop, visit) an unrolled clip position falls in, within ``TOLERANCE_S``."""
    loop = math.floor(position / truth.loop_s)
    for candidate in (loop - 1, loop, loop + 1):
        offset = position - candidate * truth.loop_s
        for visit in truth.visits:
            if visit.start_s - TOLERANCE_S <= offset <= visit.end_s + TOLERANCE_S:
                return candidate, visit
    return None


def score(truth: Truth, anchor: Anchor, window: tuple[float, float],
          answers: Iterable[tuple[float, str | None, str | None]]) -> Tally:
    """``answers``: (capture time, brand, body type) of each announcement, in order of arrival. An occurrence is
    announced when an answer falls in it; it is right when its last answer (what a backend keeps) is the ground
    truth."""
    expected = occurrences(truth, anchor.position(window[0]), anchor.position(window[1]))
    tally = Tally(expected=len(expected))
    last: dict[tuple[int, Visit], tuple[str | None, str | None]] = {}
    for captured, brand, body in answers:
        where = locate(truth, anchor.position(captured))
        if where is None:
            tally.stray += 1
        else:
            last[where] = (brand, body)
    for loop, visit in expected:
        answer = last.get((loop, visit))
        if answer is None:
            tally.missed.append(f"loop {loop} visit {visit.index} ({visit.brand} {visit.body_type})")
            continue
        tally.announced += 1
        tally.right += answer == (visit.brand, visit.body_type)
    return tally


def sample_times(start: float, seconds: float, interval: float, seed: int = 0) -> list[float]:
    """One moment at random in each ``interval`` of the window: a fixed step would sample a 5 fps stream at the
    same phase of its frame interval every time."""
    rng = np.random.default_rng(seed)
    return [start + (k + float(rng.random())) * interval for k in range(max(1, int(seconds / interval)))]


def window_for(truth: Truth, visits: int = 2, step_s: float = 0.5) -> float:
    """The shortest window that holds ``visits`` whole visits whatever the camera's phase."""
    worst = 0.0
    for phase in np.arange(0.0, truth.loop_s, step_s):
        length = step_s
        while len(occurrences(truth, phase, phase + length)) < visits:
            length += step_s
        worst = max(worst, length)
    return worst


@dataclass
class CameraRun:
    """One camera of a trial: its lag samples (seconds behind live: now minus the capture time of its latest
    processed frame), its visit tally, and side-specific figures."""

    identifier: str
    lags: list[float]
    tally: Tally
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, limit_s: float) -> dict[str, Any]:
        p99 = common.percentile(self.lags, 99)
        problems = []
        if not self.lags:
            problems.append("no processed frame sampled")
        elif not p99 <= limit_s:
            problems.append(f"lag p99 {p99:.2f} s > {limit_s:g} s")
        if not self.tally.complete:
            problems.append(f"visits {self.tally.announced}/{self.tally.expected}")
        return {"identifier": self.identifier, "lag_p50_s": common.percentile(self.lags, 50), "lag_p99_s": p99,
                "lag_max_s": max(self.lags, default=math.nan), "samples": len(self.lags),
                "visits_expected": self.tally.expected, "visits_announced": self.tally.announced,
                "visits_right": self.tally.right, "announcements_stray": self.tally.stray,
                "missed": self.tally.missed, "problems": problems, **self.extra}


@dataclass
class MountServer:
    """One GStreamer RTSP server process (tests/support/rtsp_server.py --mounts), ``count`` mounts: mount i plays
    ``videos[i % len(videos)]``."""

    videos: tuple[Path, ...]
    count: int
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[str] | None = None

    def start(self) -> MountServer:
        command = [SYSTEM_PYTHON, str(MOUNTS_SCRIPT), str(self.port), *map(str, self.videos),
                   "--mounts", str(self.count)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._process.stdout is not None
        first = self._process.stdout.readline().strip()
        if first != "READY":
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {first!r}")
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def urls(self) -> list[str]:
        return [f"rtsp://127.0.0.1:{self.port}/cam{number}" for number in range(self.count)]

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

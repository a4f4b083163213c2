"""RTSP readers against a real GStreamer RTSP server streaming the synthetic video."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import Callable

import av
import numpy as np
import pytest

from camera_pod.streams.config import StreamConfig
from camera_pod.streams.cropping import Crop
from camera_pod.streams.hub import StreamHub, StreamSubscription
from camera_pod.streams.rtsp import use_decoder_threads
from camera_pod.streams.state import StreamState
from tests.camera_pod.streams.conftest import VIDEO, live_threads, open_fds
from tests.fixtures.scenes import read_frame_index
from tests.support.servers import RtspServer, free_port

pytestmark = pytest.mark.timeout(120)


def rtsp(url: str, **overrides: object) -> StreamConfig:
    settings: dict[str, object] = {"url": url, "kind": "rtsp", "reconnect_interval_sec": 2.0, "stall_timeout_s": 2.0,
                                   "open_timeout_s": 3.0, "read_timeout_s": 3.0}
    return StreamConfig(**(settings | overrides))  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def collect(subscription: StreamSubscription, seconds: float) -> list[tuple[float, np.ndarray]]:
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = subscription.next_frame(1.0)
        if got is not None:
            frames.append((time.monotonic(), got.frame.image))
    return frames


def source_frames(count: int) -> list[np.ndarray]:
    with av.open(str(VIDEO)) as container:
        return [frame.to_ndarray(format="bgr24") for _, frame in zip(range(count), container.decode(video=0),
                                                                      strict=False)]


def test_frames_match_the_source_in_size_rate_and_content(hub: StreamHub, rtsp_server: RtspServer) -> None:
    subscription = hub.subscribe("d;c", rtsp(rtsp_server.url))
    frames = collect(subscription, 8.0)
    assert len(frames) >= 50
    assert all(image.shape == (480, 640, 3) for _, image in frames)
    steady = [frame for frame in frames if frame[0] > frames[0][0] + 3.0]  # start-up may come in a burst
    fps = (len(steady) - 1) / (steady[-1][0] - steady[0][0])
    assert 8.0 <= fps <= 12.0, fps  # the source is 10 fps: ±20 %
    indices = [read_frame_index(image) for _, image in frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    reference = source_frames(max(indices) + 1)
    for index, (_, image) in zip(indices[::10], frames[::10], strict=True):
        difference = np.abs(image.astype(np.int16) - reference[index].astype(np.int16)).mean()
        assert difference < 2.0, f"frame {index} differs from the source by {difference:.1f} on average"
    assert subscription.status().state is StreamState.ONLINE


def test_target_fps_delivers_fewer_frames(hub: StreamHub, rtsp_server: RtspServer) -> None:
    subscription = hub.subscribe("d;c", rtsp(rtsp_server.url, target_fps=2.0))
    frames = collect(subscription, 7.0)
    steady = [frame for frame in frames if frame[0] > frames[0][0] + 2.0]
    fps = (len(steady) - 1) / (steady[-1][0] - steady[0][0])
    assert 1.5 <= fps <= 2.6, fps


def test_two_subscriptions_share_one_connection_with_their_own_crops(hub: StreamHub,
                                                                      rtsp_server: RtspServer) -> None:
    config = rtsp(rtsp_server.url)
    left = hub.subscribe("display-1;cam", config, Crop(x1=0, y1=0, x2=320, y2=480))
    right = hub.subscribe("display-2;cam", config, Crop(x1=320, y1=100, x2=900, y2=400))  # clipped to the frame
    first, second = left.next_frame(10), right.next_frame(10)
    assert first is not None and second is not None
    assert first.image.shape == (480, 320, 3)  # type: ignore[attr-defined]
    assert second.image.shape == (300, 320, 3)  # type: ignore[attr-defined]
    assert hub.readers() == 1
    time.sleep(1)
    assert rtsp_server.clients == 1
    hub.unsubscribe(left)
    assert right.next_frame(5) is not None, "the remaining subscriber lost its frames"
    hub.unsubscribe(right)
    assert hub.readers() == 0


def test_a_new_subscriber_of_a_running_camera_gets_a_frame_at_once(hub: StreamHub,
                                                                   rtsp_server: RtspServer) -> None:
    config = rtsp(rtsp_server.url)
    first = hub.subscribe("display-1;cam", config)
    wait_for(lambda: first.status().online, 10)
    second = hub.subscribe("display-2;cam", config)
    started = time.monotonic()
    assert second.next_frame(5) is not None
    assert time.monotonic() - started < 0.3


def test_a_slow_consumer_drops_frames_but_never_causes_reconnects(hub: StreamHub, rtsp_server: RtspServer) -> None:
    subscription = hub.subscribe("d;c", rtsp(rtsp_server.url, stall_timeout_s=2.0))
    wait_for(lambda: subscription.status().online, 10)
    got = []
    for _ in range(3):
        frame = subscription.next_frame(5)
        assert frame is not None
        got.append(read_frame_index(frame.frame.image))
        time.sleep(3.0)  # one "pipeline pass" longer than the stall timeout
    status = subscription.status()
    assert status.reconnects == 0 and status.online
    assert status.dropped_frames >= 20
    assert all(later - earlier >= 10 for earlier, later in itertools.pairwise(got)), got


def test_server_killed_and_restarted(hub: StreamHub, rtsp_server: RtspServer) -> None:
    config = rtsp(rtsp_server.url)
    subscription = hub.subscribe("d;c", config)
    wait_for(lambda: subscription.status().online, 10)
    rtsp_server.stop()
    left_online = wait_for(lambda: not subscription.status().online, config.stall_timeout + 1)
    assert left_online <= config.stall_timeout
    rtsp_server.start()
    seen = subscription.status().frames
    back = wait_for(lambda: subscription.status().frames > seen, config.reconnect_interval_sec + 1 + 2)
    assert back <= config.reconnect_interval_sec + 1 + 2, back  # + the server's time to send a key frame
    assert subscription.status().reconnects >= 1


def test_frozen_server_is_detected_by_the_watchdog(hub: StreamHub, rtsp_server: RtspServer) -> None:
    """The server keeps the TCP connection open but sends nothing (SIGSTOP): a stall, then reconnects."""
    config = rtsp(rtsp_server.url)
    subscription = hub.subscribe("d;c", config)
    wait_for(lambda: subscription.status().online, 10)
    pid = rtsp_server.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: not subscription.status().online, config.stall_timeout + 2)
        wait_for(lambda: subscription.status().reconnects >= 2, 15)
        assert subscription.status().state in (StreamState.CONNECTING, StreamState.BACKING_OFF,
                                                StreamState.STALLED)
    finally:
        os.kill(pid, signal.SIGCONT)
    seen = subscription.status().frames
    wait_for(lambda: subscription.status().frames > seen, 15)


def test_silent_server_times_out_and_is_retried(hub: StreamHub) -> None:
    server = RtspServer(VIDEO, mode="silent").start()
    try:
        subscription = hub.subscribe("d;c", rtsp(server.url))
        wait_for(lambda: subscription.status().reconnects >= 2, 20)
        assert not subscription.status().online
        assert server.clients >= 2
    finally:
        server.stop()


def test_unsubscribe_during_backoff_stops_promptly_without_leaks(hub: StreamHub) -> None:
    threads, fds = live_threads(), open_fds()
    config = rtsp(f"rtsp://127.0.0.1:{free_port()}/stream", reconnect_interval_sec=30.0)
    subscription = hub.subscribe("d;c", config)
    wait_for(lambda: subscription.status().reconnects >= 3, 15)
    started = time.monotonic()
    hub.unsubscribe(subscription)
    assert time.monotonic() - started < 2
    assert subscription.status().state is StreamState.STOPPED
    wait_for(lambda: live_threads() == threads, 5)
    assert open_fds() <= fds


def test_max_retries_gives_up_with_a_reason(hub: StreamHub) -> None:
    subscription = hub.subscribe("d;c", rtsp(f"rtsp://127.0.0.1:{free_port()}/stream", max_retries=2,
                                             reconnect_interval_sec=0.5))
    wait_for(lambda: subscription.status().state is StreamState.FAILED, 15)
    assert "gave up after 2 retries" in (subscription.status().last_error or "")


def test_password_never_reaches_logs_or_state(hub: StreamHub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Pump-Secret-42"
    subscription = hub.subscribe("d;c", rtsp(f"rtsp://admin:{secret}@127.0.0.1:{free_port()}/stream"))
    wait_for(lambda: subscription.status().reconnects >= 2, 15)
    status = subscription.status()
    assert status.last_error and "admin:***@" in status.last_error
    assert secret not in repr(status)
    rendered = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "admin:***@" in rendered
    assert secret not in rendered


def _video(path: str, width: int, height: int) -> None:
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="bgr24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


@pytest.mark.parametrize(("size", "threads"), [((640, 480), False), ((1920, 1080), False), ((2560, 1440), True)])
def test_one_decoder_thread_up_to_1080p(tmp_path: object, size: tuple[int, int], threads: bool) -> None:
    path = os.path.join(str(tmp_path), "clip.mp4")
    _video(path, *size)
    with av.open(path) as container:
        assert use_decoder_threads(container.streams.video[0]) is threads

"""One GStreamer RTSP server with N mounts, for the cameras bench: run with Debian's python3 (python3-gi).

Usage: /usr/bin/python3 cameras_rtsp.py PORT VIDEO.mp4 COUNT
Serves rtsp://127.0.0.1:PORT/cam0 ... /cam<COUNT-1>: each mount its own media (its own pipeline, its own
playback from the file's start when its first client plays it), H.264 passed through, no re-encode. One process
instead of COUNT (tests/support/rtsp_server.py serves one mount): at 64 cameras that is ~1.3 GB and 63 processes
fewer beside the worker being measured. Prints "READY" once listening.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("video")
    parser.add_argument("count", type=int)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    launch = f"( filesrc location={args.video} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    mounts = server.get_mount_points()
    for number in range(args.count):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.set_eos_shutdown(False)
        mounts.add_factory(f"/cam{number}", factory)
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()

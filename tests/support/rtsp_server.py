"""A real RTSP server for tests: GStreamer's gst-rtsp-server, run with Debian's python3 (python3-gi).

Usage: /usr/bin/python3 rtsp_server.py PORT VIDEO.mp4 [VIDEO.mp4 ...] [--mode normal|silent] [--mounts N]
Serves rtsp://127.0.0.1:PORT/stream (H.264 passed through, no re-encode). ``--mode silent`` accepts
the RTSP session but never sends a frame (a hung camera). ``--mounts N`` serves /cam0 ... /cam<N-1> instead,
each its own media (one process for N cameras: the cameras bench), /cam<i> playing the i-th video given (in
turn). Prints "READY" once listening.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--mode", choices=("normal", "silent"), default="normal")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--mounts", type=int, default=0, help="serve /cam0 ... /cam<N-1> instead of /stream")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.mode == "silent":
        # A valid H.264 session description, but the source never produces a buffer.
        launches = ["( videotestsrc is-live=true num-buffers=0 ! video/x-raw,width=64,height=48,framerate=10/1 "
                  "! x264enc ! rtph264pay name=pay0 pt=96 )"]
    else:
        launches = [f"( filesrc location={video} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
                    for video in args.videos]
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
    paths = [f"/cam{number}" for number in range(args.mounts)] if args.mounts else ["/stream"]
    for number, path in enumerate(paths):
        server.get_mount_points().add_factory(path, _factory(launches[number % len(launches)], args.user))
    server.connect("client-connected", lambda _server, _client: print("CLIENT", flush=True))
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


def _factory(launch: str, user: str) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    factory.set_eos_shutdown(False)
    if user:  # the server checks the credentials (main); the factory lets that role play it
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    return factory

if __name__ == "__main__":
    main()

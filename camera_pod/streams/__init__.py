"""Camera streams: RTSP / HTTP-snapshot / file readers, supervised, shared per camera URL."""

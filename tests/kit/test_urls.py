"""detector.kit.urls: the schemes and shapes of URL the product accepts from outside."""

from __future__ import annotations

import pytest

from detector.kit.urls import HTTP_SCHEMES, RTSP_SCHEMES, check_url


@pytest.mark.parametrize("url", ["rtsp://10.0.0.9/stream", "RTSP://cam:554/a?b=c", "rtsps://admin:pw@cam/s",
                                 "rtsp://[fe80::1]:554/x", "rtsp://user@cam/x"])
def test_rtsp_urls_are_accepted(url: str) -> None:
    assert check_url(url, RTSP_SCHEMES) == url


@pytest.mark.parametrize(("url", "problem"), [
    ("file:///etc/passwd", "scheme 'file' is not allowed; use http:// or https://"),
    ("ftp://models/a.mpta", "scheme 'ftp' is not allowed"),
    ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
    ("gopher://h:70/_x", "scheme 'gopher' is not allowed"),
    ("rtmp://cam/live", "scheme 'rtmp' is not allowed"),
    ("data:text/plain,hi", "scheme 'data' is not allowed"),
    ("//cam/snap.jpg", "no scheme"),
    ("cam/snap.jpg", "no scheme"),
    ("/var/models/a.mpta", "no scheme"),
    ("http://", "has no host"),
    ("http:///snap.jpg", "has no host"),
    ("http:cam/snap.jpg", "has no host"),
    ("http://user:S3cr3t@", "has no host"),
    ("http://user:S3cr3t@:80/x", "has no host"),
    ("http://cam:port/x", "is not a valid URL"),
    ("http://cam:70000/x", "is not a valid URL"),
    ("http://[::1/x", "is not a valid URL"),
    ("http://cam/a b", "spaces or control characters"),
    ("http://cam/\x00", "spaces or control characters"),
    ("http://cam/\u0085", "spaces or control characters"),
    ("http://cam/" + "a" * 2048, "longer than 2048"),
])
def test_other_urls_are_refused_clearly_without_their_password(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_url(url, HTTP_SCHEMES, what="snapshotUrl")
    assert str(caught.value).startswith("snapshotUrl") and problem in str(caught.value)
    assert "S3cr3t" not in str(caught.value)

import io
import json
import logging

import pytest

from detector.kit import logs
from detector.kit.redaction import redact_text, redact_url

SECRET = "s3cr3t-P4ss"


@pytest.mark.parametrize(("url", "expected"), [
    (f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
    (f"http://user:{SECRET}@cam.local/snap.jpg?x=1", "http://user:***@cam.local/snap.jpg?x=1"),
    (f"https://h/m.mpta?token={SECRET}&a=b", "https://h/m.mpta?token=***&a=b"),
    ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
    (f"rtsp://{SECRET}@10.0.0.5/stream", "rtsp://***@10.0.0.5/stream"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(("url", "kept"), [
    # S3 presigned (SigV4): the signature and the credential scope grant access; the rest does not.
    (f"https://bucket.s3.amazonaws.com/m.mpta?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={SECRET}%2F2025"
     f"&X-Amz-Date=20250101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature={SECRET}",
     "X-Amz-Expires=900"),
    (f"https://b.s3.amazonaws.com/m.mpta?X-Amz-Security-Token={SECRET}&X-Amz-Signature=abc{SECRET}",
     "https://b.s3.amazonaws.com/m.mpta?"),
    # GCS V4 signed URL
    (f"https://storage.googleapis.com/b/m.mpta?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential={SECRET}"
     f"&X-Goog-Signature={SECRET}", "X-Goog-Algorithm=GOOG4-RSA-SHA256"),
    # Azure SAS
    (f"https://acct.blob.core.windows.net/c/m.mpta?sv=2022-11-02&se=2025-01-01&sp=r&sig={SECRET}", "sp=r"),
])
def test_signed_object_store_links_are_masked(url: str, kept: str) -> None:
    redacted = redact_url(url)
    assert SECRET not in redacted and SECRET not in redact_text(f"download {url} failed")
    assert kept in redacted, "only the secret parameters are masked"


def test_redact_text_finds_urls_inside_messages() -> None:
    text = f"cannot open rtsp://admin:{SECRET}@cam/1 and http://a:{SECRET}@b/c (password={SECRET})"
    redacted = redact_text(text)
    assert SECRET not in redacted
    assert "rtsp://admin:***@cam/1" in redacted


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_logs_never_contain_credentials(fmt: str) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", fmt)  # type: ignore[arg-type]
    handler = logging.getLogger().handlers[-1]
    handler.setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("tests.redaction")
    log.info("opening %s", f"rtsp://admin:{SECRET}@cam/1", extra={"url": f"http://u:{SECRET}@h/x"})
    try:
        raise RuntimeError(f"connect failed to rtsp://admin:{SECRET}@cam/1")
    except RuntimeError:
        log.exception("stream error")
    output = stream.getvalue()
    assert SECRET not in output
    assert "admin:***@cam/1" in output
    if fmt == "json":
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert records[0]["logger"] == "tests.redaction"
        assert records[0]["url"] == "http://u:***@h/x"


def test_text_logs_escape_line_breaks_in_fields() -> None:
    import logging

    from detector.kit.logs import TextFormatter

    record = logging.LogRecord("broker.app", logging.ERROR, __file__, 1, "invalid backend message; ignored", None, None)
    record.error = "payload\n2026-01-01 00:00:00 INFO forged: line\r\x1b[31m"
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "error=payload\\n2026-01-01 00:00:00 INFO forged: line\\r\\x1b[31m" in line

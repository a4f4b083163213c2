"""``detector protocol-test`` helpers: a local model file is served over HTTP, the token goes in a header."""

from __future__ import annotations

from pathlib import Path

import httpx

from broker.protocol_check import auth_headers, served_model


def test_a_local_model_file_is_served_over_http_while_the_walk_runs(tmp_path: Path) -> None:
    archive = tmp_path / "gas.mpta"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    with served_model(str(archive)) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/gas.mpta")
        assert httpx.get(url).content == archive.read_bytes()
    with served_model("https://models.example/gas.mpta") as url:
        assert url == "https://models.example/gas.mpta", "URLs are passed as they are"


def test_the_token_is_a_bearer_header() -> None:
    assert auth_headers("abc") == {"Authorization": "Bearer abc"}
    assert auth_headers(None) == {}

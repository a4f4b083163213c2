"""The console in a real browser: ``detector run`` with two real RTSP cameras, Debian's Chromium driven by playwright.

Both cameras appear with live thumbnails and boxes; one camera's server stops and its card turns offline
without a reload; the larger view refreshes; no credential reaches the page or anything it loads. Screenshots
are written to ``$DETECTOR_TEST_ARTIFACTS`` (else the test's tmp_path).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Response, async_playwright

from tests.support import embedded
from tests.support.credentialed_rtsp import PASSWORD as RTSP_PASSWORD
from tests.support.credentialed_rtsp import CredentialedRtspServer
from tests.support.embedded import VIDEO, Worker
from tests.support.model_server import serve_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "console-token-0123456789abcdef"
MODEL_PASSWORD = "M0del-Secret7"
SECRETS = (RTSP_PASSWORD, MODEL_PASSWORD, TOKEN)
CAMERAS = ("display-console-1;cam-1", "display-console-2;cam-2")
REFUSED = "display-console-3;cam-3"
TEXT_TYPES = ("text/html", "text/javascript", "text/css", "application/json")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DETECTOR_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def secured_worker(tmp_path: Path) -> Iterator[Worker]:
    running = Worker(tmp_path, token=TOKEN)
    running.wait_ready()
    yield running
    if running.process.poll() is None:
        running.stop()
    assert running.orphans() == [], "camera pods outlived the worker"


@pytest.fixture
def cameras() -> Iterator[tuple[CredentialedRtspServer, CredentialedRtspServer]]:
    first, second = CredentialedRtspServer(VIDEO).start(), CredentialedRtspServer(VIDEO).start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def model_url(fixture_mpta: Path) -> Iterator[str]:
    """The archive over HTTP, its URL carrying a password as a deployment's would (the server ignores it)."""
    with serve_files(fixture_mpta) as base:
        yield base.replace("http://", f"http://deploy:{MODEL_PASSWORD}@") + f"/{fixture_mpta.name}"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: the console's browser test needs Debian's chromium "
                    "(scripts/system-packages.sh installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        await launched.close()


def subscriptions(cameras: tuple[CredentialedRtspServer, CredentialedRtspServer], model_url: str,
                  ) -> list[dict[str, Any]]:
    common = {"modelUrl": model_url, "modelId": 42, "modelName": "gas-station"}
    return [{"subscriptionIdentifier": CAMERAS[0], "rtspUrl": cameras[0].url, **common,
             "cropX1": 100, "cropY1": 80, "cropX2": 560, "cropY2": 400},
            {"subscriptionIdentifier": CAMERAS[1], "rtspUrl": cameras[1].url, **common},
            {"subscriptionIdentifier": REFUSED, "rtspUrl": cameras[1].url.replace("rtsp:", "ftp:"), **common}]


def card_is(identifier: str, condition: str) -> str:
    """A predicate for page.wait_for_function: ``condition`` on the card ``c`` of ``identifier``."""
    found = f"document.querySelector('[data-identifier=\"{identifier}\"]')"
    return f"() => {{ const c = {found}; return !!c && ({condition}); }}"


async def test_the_console_shows_both_cameras_live(secured_worker: Worker, cameras: Any, model_url: str,
                                                   connect: Any, browser: Browser, artifacts: Path) -> None:
    embedded.clean_outputs(identifier.split(";")[0] for identifier in CAMERAS)
    backend = await connect(secured_worker.url, token=TOKEN)
    await backend.send({"type": "setSubscriptionList", "subscriptions": subscriptions(cameras, model_url)})

    page = await browser.new_page(viewport={"width": 1400, "height": 800})
    loaded: list[Response] = []
    page.on("response", lambda response: loaded.append(response))
    await page.goto(f"http://127.0.0.1:{secured_worker.port}/console?token={TOKEN}")
    assert page.url == f"http://127.0.0.1:{secured_worker.port}/console", "signed in: the token left the address"
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]

    for identifier in CAMERAS:  # the models load (exported to ONNX once) and the streams start
        await page.wait_for_function(card_is(identifier, "c.dataset.state === 'online' && +c.dataset.images >= 2"),
                                     timeout=120_000)
    await page.wait_for_function("() => window.consoleState().cameras.every(c => c.sighting?.boxes.length)",
                                 timeout=60_000)
    assert await page.get_attribute("#backend", "data-connected") == "true"
    assert REFUSED in await page.inner_text("#refused") and "stream" in await page.inner_text("#refused")
    await page.screenshot(path=artifacts / "console.png")

    await page.evaluate("window.notReloaded = true")
    stopped = time.monotonic()
    cameras[1].stop()
    await page.wait_for_function(card_is(CAMERAS[1], "c.dataset.state !== 'online'"), timeout=15_000)
    offline_after = time.monotonic() - stopped
    assert await page.evaluate("window.notReloaded === true"), "updated live, not by a reload"
    assert await page.get_attribute(f"[data-identifier='{CAMERAS[0]}']", "data-state") == "online"
    assert offline_after < 5, f"the stopped camera showed offline after {offline_after:.1f} s"
    await page.screenshot(path=artifacts / "console-offline.png")
    (artifacts / "console-timings.json").write_text(json.dumps({"offline_shown_after_s": round(offline_after, 2)}))

    await page.click(f"[data-identifier='{CAMERAS[0]}']")
    await page.wait_for_function("() => document.getElementById('detail').open && "
                                 "+document.getElementById('detail-canvas').dataset.images >= 3", timeout=10_000)
    await page.screenshot(path=artifacts / "console-detail.png")

    await assert_no_secrets(page, loaded)
    await page.close()


async def assert_no_secrets(page: Page, loaded: list[Response]) -> None:
    """The page, the last snapshot and every text it loaded (the event stream's snapshots are the last one)."""
    texts = [await page.content(), json.dumps(await page.evaluate("window.consoleState()")),
             await page.evaluate("fetch('console/state').then(r => r.text())")]
    for response in loaded:
        kind = response.headers.get("content-type", "")
        if kind.startswith(TEXT_TYPES):
            texts.append(await response.text())
        texts.append(response.url)
    assert len(texts) > 5
    leaked = [text[:200] for text in texts if any(secret in text for secret in SECRETS if secret != TOKEN)]
    assert leaked == [], "a credential reached the console"
    assert [t for t in texts[:3] if TOKEN in t] == [], "the token is not on the page"

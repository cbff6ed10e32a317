"""The web page in a real headless Chromium, against ``clothing up`` on loopback."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.environment import dataset_path, tool
from tests.images import jpeg

from .conftest import run_up

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def chromium() -> str:
    return tool("chromium", "apt-get install chromium")


def a_clothing_photo(tmp_path: Path) -> Path:
    validation = dataset_path() / "validation"
    photos = sorted(validation.glob("pants/*.jpg")) if validation.is_dir() else []
    if photos:
        return photos[0]
    generated = tmp_path / "generated.jpg"
    generated.write_bytes(jpeg((60, 80, 140), size=(300, 400)))
    return generated


def test_upload_on_the_page_shows_the_api_answer(
    chromium: str, model_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    photo = a_clothing_photo(tmp_path)
    with run_up(model_dir, tmp_path) as up:
        with photo.open("rb") as image:
            api = httpx.post(
                f"{up.gateway_url}/predict", files={"file": (photo.name, image)}, timeout=30
            ).json()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 760})
                page.goto(up.gateway_url + "/")
                page.locator("#model-status").filter(has_text="is ready").wait_for()
                page.set_input_files("#file-input", str(photo))
                page.locator("#result").wait_for(state="visible")
                assert page.inner_text("#top-label") == api["label"]
                bars = page.locator("#bars li")
                assert bars.count() == 10
                assert bars.first.get_attribute("data-label") == api["label"]
                assert page.locator("#photo").evaluate("img => img.naturalWidth") > 0
                shot = tmp_path / "page.png"
                page.screenshot(path=str(shot), full_page=True)
                if os.environ.get("GATEWAY_SCREENSHOT"):
                    shutil.copy(shot, os.environ["GATEWAY_SCREENSHOT"])

                # An error from the gateway is shown inline, the page keeps working.
                page.fill("#url-input", "http://127.0.0.1:1/secret.jpg")
                page.click("#url-submit")
                error = page.locator("#error")
                error.wait_for(state="visible")
                assert "refused" in error.inner_text()
            finally:
                browser.close()

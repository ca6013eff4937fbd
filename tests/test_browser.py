"""End to end in headless Chromium: upload a hazy photo on the page, wait, download, check the result.

Needs Debian's chromium and the `playwright` package (`.ci/install-browser` installs both); skipped
with the reason otherwise. As a script it writes the docs screenshot:

    python tests/test_browser.py --model MODEL_DIR --out docs/img/web.png
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restorevar.serving.app import ServeConfig, create_server

CHROMIUM = Path("/usr/bin/chromium")
# The closed network makes Chromium hang on its background services without these.
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
HAZE = Path(__file__).resolve().parents[1] / "examples" / "haze.jpg"


@contextlib.contextmanager
def serving(model, name: str = "golden-tiny (random weights)"):
    server = create_server(ServeConfig(port=0), model=model, name=name)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def browser_page(width: int = 1100, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            accept_downloads=True,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def restore_on_page(page, url: str, upload: Path, *, timeout_s: float = 120) -> Path:
    """Upload `upload` on the page, wait for the result and download it; → the downloaded file."""
    page.goto(url)
    page.wait_for_selector("#model-info:not(:has-text('connecting'))")
    page.set_input_files("#files", str(upload))
    link = page.locator(".job .download")
    link.wait_for(state="visible", timeout=timeout_s * 1000)
    page.locator(".job .after").evaluate("img => img.decode()")  # the after image is painted
    with page.expect_download() as download:
        link.click()
    target = upload.with_name(download.value.suggested_filename)
    download.value.save_as(target)
    return target


def test_upload_restore_download(golden_model, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}; run .ci/install-browser (apt-get install chromium)")
    pytest.importorskip("playwright", reason="playwright is not installed; run .ci/install-browser")
    upload = tmp_path / "hazy street.png"
    Image.open(HAZE).convert("RGB").resize((120, 90)).save(upload)  # one 128² tile: fast on CPU
    with serving(golden_model) as url, browser_page() as page:
        result = restore_on_page(page, url, upload)
        assert page.locator(".job .status").inner_text() == "restored"
        assert "120×90" in page.locator(".job .time").inner_text()
        page.screenshot(path=str(tmp_path / "web.png"), full_page=True)
    assert result.name == "hazy street_restored.png"
    restored, source = np.asarray(Image.open(result)), np.asarray(Image.open(upload))
    assert restored.shape == source.shape == (90, 120, 3)
    assert np.abs(restored.astype(int) - source).mean() > 5
    assert (tmp_path / "web.png").stat().st_size > 10_000


def main() -> None:
    """Write the docs screenshot: the page after restoring examples/haze.jpg at full resolution."""
    from restorevar.models.registry import load_model

    parser = argparse.ArgumentParser(description="screenshot of `restorevar serve` for docs/serve.md")
    parser.add_argument("--model", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument("--out", type=Path, default=Path("docs/img/web.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        upload = Path(folder) / HAZE.name
        shutil.copy(HAZE, upload)
        name = Path(args.model).name if args.model else "bundled default"
        with serving(load_model(args.model), name) as url, browser_page(1000, 1000) as page:
            result = restore_on_page(page, url, upload, timeout_s=600)
            page.locator(".job .slider").fill("45")
            png = page.screenshot(full_page=True)
        size = Image.open(result).size
    Image.open(io.BytesIO(png)).save(args.out, optimize=True)
    print(f"wrote {args.out}; downloaded result {size[0]}×{size[1]}")


if __name__ == "__main__":
    main()

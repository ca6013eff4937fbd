"""`restorevar serve` over real HTTP on a free loopback port: the golden tiny model for real restorations,
a fake model (instant or blocked) for the queue, busy and eviction paths."""

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from restorevar.models.restorevar.model import Restoration
from restorevar.serving.app import ServeConfig, create_server


class FakeModel:
    """Inverts colours; `gate` (if set) blocks every batch until released."""

    image_size = 32
    device = torch.device("cpu")

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate

    def restore_batch(self, degraded_B3HW, **_):
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        return Restoration(1 - degraded_B3HW)


@contextlib.contextmanager
def running(model, **config):
    server = create_server(ServeConfig(port=0, **config), model=model)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def call(url, data=None, headers=None, method=None):
    """(status, headers, body) of one request; 4xx/5xx are answers, not exceptions."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def png_bytes(height, width, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1)
    pixels = pixels + rng.integers(0, 20, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


def wait_for(url, job_id, status="done"):
    for _ in range(600):
        job = json.loads(call(f"{url}/api/jobs/{job_id}")[2])
        if job["status"] == status:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {status}: {job}")


@pytest.fixture(scope="module")
def golden_url(golden_model):
    with running(golden_model, max_upload_mb=0.05, max_pixels=20_000) as url:
        yield url


def test_health_and_page(golden_url):
    status, _, body = call(f"{golden_url}/api/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["image_size"] == 128
    assert health["queue"] == {"waiting": 0, "running": 0, "capacity": 8}
    status, headers, body = call(golden_url + "/")
    assert status == 200 and b"RestoreVAR" in body and "default-src 'self'" in headers["Content-Security-Policy"]
    assert call(f"{golden_url}/static/app.js")[0] == 200
    assert call(f"{golden_url}/static/../serve.py")[0] == 404  # paths are table keys, never files


def test_restore_returns_png_of_the_same_size(golden_url):
    upload = png_bytes(40, 56)
    status, headers, body = call(f"{golden_url}/api/restore", upload, {"Content-Type": "image/png"})
    assert status == 200 and headers["Content-Type"] == "image/png", body[:200]
    restored = np.asarray(Image.open(io.BytesIO(body)))
    source = np.asarray(Image.open(io.BytesIO(upload)))
    assert restored.shape == source.shape == (40, 56, 3)
    assert np.abs(restored.astype(int) - source).mean() > 5
    assert float(headers["X-Seconds"]) > 0


def test_job_api_with_multipart_upload(golden_url):
    boundary = "testboundary42"
    upload = png_bytes(30, 20, seed=1)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="../../etc/x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + upload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kind = f"multipart/form-data; boundary={boundary}"
    status, _, answer = call(f"{golden_url}/api/jobs", body, {"Content-Type": kind})
    assert status == 202, answer
    job = json.loads(answer)
    assert job["status"] in ("queued", "running") and (job["width"], job["height"]) == (20, 30)
    done = wait_for(golden_url, job["id"])
    assert done["tiles_done"] == done["tiles_total"] == 1 and done["seconds"] > 0
    status, headers, result = call(golden_url + done["result"])
    assert status == 200 and Image.open(io.BytesIO(result)).size == (20, 30)
    assert headers["X-Job-Id"] == job["id"] and "etc" not in str(headers)  # the client's file name is unused
    assert Image.open(io.BytesIO(call(golden_url + done["input"])[2])).size == (20, 30)


@pytest.mark.parametrize(
    "upload, status, message",
    [
        (b"hello, not an image", 400, "not an image"),
        (png_bytes(64, 64)[:3000], 400, "truncated"),
        (b"", 400, "empty"),
        (b"\x89PNG" + bytes(60_000), 413, "above this server's limit of 0.05 MB"),
        (png_bytes(100, 201), 413, "20,100 pixels"),
    ],
)
def test_bad_uploads_get_clear_4xx_and_the_server_keeps_serving(golden_url, upload, status, message):
    got, _, body = call(f"{golden_url}/api/restore", upload, {"Content-Type": "application/octet-stream"})
    assert got == status and message in error_of(body), body
    assert json.loads(call(f"{golden_url}/api/health")[2])["queue"]["waiting"] == 0  # slot given back


def test_unknown_routes_and_foreign_hosts_are_refused(golden_url):
    assert call(f"{golden_url}/api/jobs/nope")[0] == 404
    assert call(f"{golden_url}/api/nothing", b"x")[0] == 404
    status, _, body = call(f"{golden_url}/api/health", headers={"Host": "evil.example:80"})
    assert status == 403 and "localhost" in error_of(body)
    status, _, body = call(f"{golden_url}/api/restore", png_bytes(8, 8), {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in error_of(body)


def test_openapi_schema_lists_the_endpoints(golden_url):
    status, headers, body = call(f"{golden_url}/openapi.json")
    schema = json.loads(body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert schema["openapi"].startswith("3.")
    expected = {"/api/restore", "/api/jobs", "/api/jobs/{id}", "/api/jobs/{id}/result", "/api/health"}
    assert expected <= set(schema["paths"])
    assert "503" in schema["paths"]["/api/restore"]["post"]["responses"]


def test_full_queue_answers_503_with_retry_after():
    gate = threading.Event()
    with running(FakeModel(gate), queue_size=1) as url:
        first = json.loads(call(f"{url}/api/jobs", png_bytes(16, 16))[2])
        wait_for(url, first["id"], "running")  # blocked in the model: the queue slot is free again
        second = call(f"{url}/api/jobs", png_bytes(16, 16))
        status, headers, body = call(f"{url}/api/restore", png_bytes(16, 16))
        assert second[0] == 202 and status == 503
        assert "busy" in error_of(body) and int(headers["Retry-After"]) >= 1
        gate.set()
        for job in (first, json.loads(second[2])):
            assert wait_for(url, job["id"])["status"] == "done"
        assert call(f"{url}/api/restore", png_bytes(16, 16))[0] == 200  # serving again


def test_finished_results_are_evicted_beyond_the_bound():
    with running(FakeModel(), max_results=1) as url:
        ids = [json.loads(call(f"{url}/api/jobs", png_bytes(16, 16, seed))[2])["id"] for seed in range(2)]
        wait_for(url, ids[1])  # one worker: the first job finished before the second
        status, _, body = call(f"{url}/api/jobs/{ids[0]}/result")
        assert status == 404 and "expired" in error_of(body)
        assert call(f"{url}/api/jobs/{ids[1]}/result")[0] == 200


def test_cli_module_imports_without_torch():
    code = "import sys, restorevar.serving.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

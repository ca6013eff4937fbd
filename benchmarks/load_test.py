"""Load test of `restorevar serve` on loopback: N requests from C concurrent clients, every one with a timeout.

Each request must either succeed (a PNG of the upload's size) or get a clear 503 "busy" answer with
Retry-After; nothing may crash or hang. The server runs as a child process so that its RSS (before,
peak, after) is its own. Default model: the golden tiny model of the tests (random weights, 128²).

    python benchmarks/load_test.py --requests 50 --clients 10 --out benchmarks/results/load_test.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def golden_tiny_model(directory: Path) -> Path:
    from restorevar.models.restorevar.convert import convert_official
    from restorevar.models.restorevar.model import RestoreVAR

    golden = ROOT / "tests" / "fixtures" / "golden"
    converted = convert_official(
        golden / "vqvae_tiny" / "state_dict.safetensors", golden / "restorevar_tiny" / "restorevar.pth", refiner_heads=2
    )
    model = RestoreVAR(converted.config)
    for name, state in converted.states.items():
        getattr(model, name).load_state_dict(state, strict=True)
    model.save_pretrained(directory)
    return directory


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def start_server(model: Path, args) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "restorevar.serving.app",
        "--model",
        str(model),
        "--port",
        "0",
        "--concurrency",
        str(args.concurrency),
        "--queue-size",
        str(args.queue_size),
    ]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if match := re.search(r"on (http://\S+)", line):
            threading.Thread(target=server.stderr.read, daemon=True).start()  # keep draining its logs
            return server, match.group(1)
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}: {line.strip()}")
    server.kill()
    raise RuntimeError("server did not start within 120 s")


def with_retries(url: str, upload: bytes, size: tuple[int, int], args) -> tuple[str, float, int]:
    """A client that honours Retry-After (capped) up to `args.retries` times → (outcome, seconds, busy answers)."""
    start, busy = time.perf_counter(), 0
    while True:
        outcome, retry_after = one_request(url, upload, size, args.timeout)
        if outcome != "busy" or busy >= args.retries:
            return outcome, time.perf_counter() - start, busy + (outcome == "busy")
        busy += 1
        time.sleep(min(retry_after, args.max_wait))


def one_request(url: str, upload: bytes, size: tuple[int, int], timeout: float) -> tuple[str, float]:
    """→ (outcome, Retry-After); outcome is 'ok', 'busy', or a short description of what went wrong."""
    retry_after = 0.0
    request = urllib.request.Request(f"{url}/api/restore", upload, {"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        outcome = "ok" if Image.open(io.BytesIO(body)).size == size else "wrong size"
    except urllib.error.HTTPError as err:
        message = json.loads(err.read()).get("error", "")
        retry_after = float(err.headers.get("Retry-After", 0))
        is_busy = err.code == 503 and "busy" in message and retry_after >= 1
        outcome = "busy" if is_busy else f"HTTP {err.code}: {message[:60]}"
    except Exception as err:  # noqa: BLE001 - a load test counts every failure, including timeouts
        outcome = f"{type(err).__name__}"
    return outcome, retry_after


def run(args) -> dict:
    upload_image = Image.open(ROOT / "examples" / "haze.jpg").convert("RGB").resize((120, 90))
    buffer = io.BytesIO()
    upload_image.save(buffer, "PNG")
    with tempfile.TemporaryDirectory() as folder:
        model = Path(args.model) if args.model else golden_tiny_model(Path(folder) / "model")
        server, url = start_server(model, args)
        try:
            cold = rss_mb(server.pid)
            warmup = one_request(url, buffer.getvalue(), upload_image.size, args.timeout)[0]
            assert warmup == "ok", f"warm-up request failed: {warmup}"  # first-call allocations are not a leak
            time.sleep(1)
            before = rss_mb(server.pid)
            peak, done = [before], threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    peak.append(rss_mb(server.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(
                    pool.map(
                        lambda _: with_retries(url, buffer.getvalue(), upload_image.size, args), range(args.requests)
                    )
                )
            wall = time.perf_counter() - start
            time.sleep(args.settle)
            done.set()
            sampler.join()
            after = rss_mb(server.pid)
            health = json.loads(urllib.request.urlopen(f"{url}/api/health", timeout=10).read())
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(30)
    outcomes = Counter(outcome for outcome, _, _ in results)
    ok_seconds = sorted(seconds for outcome, seconds, _ in results if outcome == "ok")
    return {
        "requests": args.requests,
        "clients": args.clients,
        "concurrency": args.concurrency,
        "queue_size": args.queue_size,
        "outcomes": dict(outcomes),
        "wall_s": wall,
        "ok_median_s": ok_seconds[len(ok_seconds) // 2] if ok_seconds else None,
        "ok_max_s": ok_seconds[-1] if ok_seconds else None,
        "busy_answers": sum(busy for _, _, busy in results),
        "retries": args.retries,
        "rss_cold_mb": cold,
        "rss_before_mb": before,
        "rss_peak_mb": max(peak),
        "rss_after_mb": after,
        "settle_s": args.settle,
        "server_alive": alive,
        "queue_after": health["queue"],
        "image": f"{upload_image.size[0]}×{upload_image.size[1]}",
    }


def markdown(r: dict) -> str:
    outcomes = ", ".join(f"{count} {name}" for name, count in sorted(r["outcomes"].items()))
    fmt = lambda value: "–" if value is None else f"{value:.2f}"  # noqa: E731
    return "\n".join(
        [
            "# `restorevar serve` load test",
            "",
            f"`python benchmarks/load_test.py --requests {r['requests']} --clients {r['clients']}` — golden tiny model "
            "(random weights, 128²), CPU, loopback only.",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
            f"Python {platform.python_version()}.",
            "",
            "| setting | value |",
            "|---|---|",
            f"| requests / concurrent clients | {r['requests']} / {r['clients']} |",
            f"| server --concurrency / --queue-size | {r['concurrency']} / {r['queue_size']} |",
            f"| upload | {r['image']} PNG, `POST /api/restore` (waits for the result), "
            f"timeout {r.get('timeout', 120)} s |",
            f"| outcomes | {outcomes} |",
            f"| wall time | {r['wall_s']:.1f} s |",
            f"| latency of successes incl. retries: median / max "
            f"| {fmt(r['ok_median_s'])} s / {fmt(r['ok_max_s'])} s |",
            f"| 503 busy answers seen (clients wait Retry-After, retry up to {r['retries']}×) | {r['busy_answers']} |",
            f"| server RSS at start (model loaded) | {r['rss_cold_mb']:.0f} MB |",
            f"| server RSS before (after 1 warm-up request) / peak / after ({r['settle_s']:g} s idle) | "
            f"{r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_after_mb']:.0f} MB |",
            f"| server alive afterwards, queue | {r['server_alive']}, {r['queue_after']} |",
            "",
            "Outcomes are final: every request either succeeded (a PNG of the upload's size) or, after its retries, "
            'still got `503` with a JSON "server busy" message and `Retry-After`. Any other outcome (error, '
            "timeout, wrong size) would be listed there and makes the script exit 1.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the tests' golden tiny model)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--retries", type=int, default=5, help="retries of a client after a 503")
    parser.add_argument("--max-wait", type=float, default=10.0, help="cap on the Retry-After a client honours")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before the 'after' RSS")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    result = run(args) | {"timeout": args.timeout}
    report = markdown(result)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    failures = {name: count for name, count in result["outcomes"].items() if name not in ("ok", "busy")}
    return 1 if failures or not result["server_alive"] else 0


if __name__ == "__main__":
    sys.exit(main())

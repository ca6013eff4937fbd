"""The job side of `restorevar serve`: upload checks, a bounded queue, worker threads, and finished jobs
kept in memory with bounds on count, bytes and age (so memory returns to its baseline).

Arrays: `rgb_HW3` float32 in [0, 1], as in `images`. No torch import at module import time.
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
import logging
import math
import queue
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Lower than `restorevar restore`'s 80 MP: a server holds several uploads at once; 16 MP is 4600×3450.
DEFAULT_MAX_PIXELS = 16_000_000


class ServeError(Exception):
    """A request that cannot be served; `message` is one line for the client."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 7860  # Gradio's default, so the usual local-app port
    model: str | None = None
    concurrency: int = 1
    queue_size: int = 8  # waiting jobs; one more upload gets 503 + Retry-After
    max_upload_mb: float = 25.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_results: int = 32  # finished jobs kept for download
    max_result_mb: float = 512.0
    result_ttl_s: float = 900.0
    sync_timeout_s: float = 600.0  # POST /api/restore waits this long, then 504
    batch_size: int = 4


@dataclass
class Job:
    id: str
    task: str  # "restore" or "analysis"
    data: bytes  # the upload; dropped as soon as it is decoded
    use_resize: bool = False
    status: str = "queued"  # queued → running → done | failed
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    tiles_done: int = 0
    tiles_total: int = 0
    width: int = 0
    height: int = 0
    error: str | None = None
    error_status: int = 500
    warnings: list[str] = field(default_factory=list)
    result_png: bytes = b""
    input_png: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)

    def public(self) -> dict:
        seconds = (self.finished or time.monotonic()) - self.started if self.started else None
        body = {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "tiles_done": self.tiles_done,
            "tiles_total": self.tiles_total,
            "width": self.width,
            "height": self.height,
            "seconds": None if seconds is None else round(seconds, 3),
            "warnings": self.warnings,
        }
        if self.status == "done":
            body["result"] = f"/api/jobs/{self.id}/result"
            body["input"] = f"/api/jobs/{self.id}/input"
        if self.error:
            body["error"] = self.error
        return body


# ------------------------------------------------------------------------------------ images


def decode_upload(data: bytes, max_pixels: int | None):
    """Upload bytes → LoadedImage, in memory. Pixel limit → 413, anything unreadable → 400."""
    from restorevar.images.load import ImageError, image_size_from_header, load_image_bytes

    try:
        width, height = image_size_from_header(data, name="upload")  # header only: no pixels decoded yet
        if max_pixels and width * height > max_pixels:
            raise ServeError(
                413,
                f"image is {width}×{height} = {width * height:,} pixels, above this server's "
                f"limit of {max_pixels:,}; shrink it or restart with --max-pixels {width * height}",
            )
        return load_image_bytes(data, name="upload", max_pixels=None)
    except ImageError as err:
        raise ServeError(400, str(err)) from None


def encode_png(img, icc_profile: bytes | None = None) -> bytes:
    """PNG bytes with what `image_save.save_image` keeps: 16 bits, alpha, grey, ICC profile."""
    from restorevar.images.save import encode_image

    return encode_image(img, "PNG", icc_profile=icc_profile, name="result.png")


def preview_png(rgb_HW3) -> bytes:
    """An 8-bit RGB PNG of what the model saw (EXIF-rotated), for the page's 'before' view."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(rgb_HW3.clip(0, 1) * 255).astype(np.uint8)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def has_analysis() -> bool:
    return importlib.util.find_spec("restorevar.evaluation.analyze") is not None


def analysis_image(model, loaded):
    """Scale-space analysis of one photo without a clean reference (paper Fig. 2 / 9, `restorevar.evaluation.analyze`).

    Row 1: the photo squashed to the native side S and its restoration. Rows 2-3: images decoded from
    scales 1..k of the photo's own tokens and of the tokens the model generates for it, captioned with
    the share of scale-k tokens the two agree on: degradation lives where they disagree (coarse scales).
    """
    import numpy as np
    import torch
    from PIL import Image

    from restorevar.evaluation.analyze import token_agreement
    from restorevar.evaluation.evaluate import paper_resize
    from restorevar.evaluation.report import labelled_grid
    from restorevar.images.load import to_tensor
    from restorevar.models.restorevar.vqvae import to_unit

    def pil(image_3SS: torch.Tensor) -> Image.Image:
        return Image.fromarray(np.round(image_3SS.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8))

    vqvae = model.vqvae
    photo_13SS = to_tensor(paper_resize(loaded.rgb, model.image_size))[None].to(model.device)
    with torch.no_grad():
        restoration = model.restore_batch(photo_13SS, return_intermediates=True)
        own = vqvae.tokenize(photo_13SS * 2 - 1)
        generated = [t.to(own[0].device) for t in restoration.intermediates.indices]
        prefixes = [
            vqvae.quantizer.indices_to_fhat(tokens[:k], vqvae.config.latent_size)
            for tokens in (own, generated)
            for k in range(1, len(own) + 1)
        ]
        decoded = torch.cat(
            [
                vqvae.decode_latent(torch.cat(prefixes[i : i + 4]))  # 4 at a time: bounded memory
                for i in range(0, len(prefixes), 4)
            ]
        )
    decoded = to_unit(decoded)
    agreement, num_scales = token_agreement(own, generated), len(own)
    rows = [
        ("inputs", [("photo (native size)", pil(photo_13SS[0])), ("restored", pil(restoration.image_B3HW[0]))]),
        ("photo's tokens", [(f"scales 1..{k + 1}", pil(decoded[k])) for k in range(num_scales)]),
        (
            "generated\n(restored) tokens",
            [(f"1..{k + 1}: {agreement[k]:.0%} same", pil(decoded[num_scales + k])) for k in range(num_scales)],
        ),
    ]
    return labelled_grid(rows, cell=max(128, min(model.image_size, 256)))


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc): without this, RSS stays at the peak of the
    largest job long after its buffers were freed. A no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------------ jobs


class JobQueue:
    """Bounded waiting queue, `concurrency` workers, and the finished jobs (LRU by count/bytes/age)."""

    def __init__(self, model, config: ServeConfig):
        self.model, self.config = model, config
        self.lock = threading.Lock()
        self.jobs: OrderedDict[str, Job] = OrderedDict()  # every known job; finished ones in finish order
        self.waiting = 0  # uploads holding a queue slot (being validated or queued)
        self.running = 0
        self.recent_seconds: deque[float] = deque(maxlen=20)
        self.todo: queue.Queue[Job | None] = queue.Queue()
        self.workers = [
            threading.Thread(target=self._work, name=f"restorevar-worker-{i}", daemon=True)
            for i in range(config.concurrency)
        ]
        for worker in self.workers:
            worker.start()

    def reserve(self) -> None:
        """Take a queue slot before the upload is decoded; 503 when all are taken."""
        with self.lock:
            if self.waiting >= self.config.queue_size:
                average = sum(self.recent_seconds) / len(self.recent_seconds) if self.recent_seconds else 5.0
                wait = math.ceil(average * (self.waiting + self.running) / self.config.concurrency)
                raise ServeError(
                    503,
                    f"server busy: {self.waiting} jobs waiting (limit {self.config.queue_size}); retry later",
                    retry_after=min(max(wait, 1), 120),
                )
            self.waiting += 1

    def release(self) -> None:
        with self.lock:
            self.waiting -= 1

    def submit(self, data: bytes, *, task: str, use_resize: bool) -> Job:
        """Validate `data` (slot already reserved) and queue it; on a bad upload the slot is freed."""
        try:
            loaded = decode_upload(data, self.config.max_pixels)
        except BaseException:
            self.release()
            raise
        job = Job(secrets.token_urlsafe(12), task, data, use_resize)  # unguessable: ids are the only key
        job.height, job.width = loaded.rgb.shape[:2]
        del loaded  # the worker decodes again: queued jobs hold compressed bytes, not float pixels
        with self.lock:
            self.jobs[job.id] = job
        self.todo.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self.lock:
            self._evict()
            job = self.jobs.get(job_id)
        if job is None:
            raise ServeError(404, f"no job '{job_id[:40]}': it never existed or its result expired; upload again")
        return job

    def counts(self) -> dict:
        with self.lock:
            return {"waiting": self.waiting, "running": self.running, "capacity": self.config.queue_size}

    def close(self) -> None:
        for _ in self.workers:
            self.todo.put(None)
        for worker in self.workers:
            worker.join(timeout=30)

    def _work(self) -> None:
        while (job := self.todo.get()) is not None:
            with self.lock:
                self.waiting -= 1
                self.running += 1
            job.status, job.started = "running", time.monotonic()
            try:
                self._run(job)
                job.status = "done"
            except ServeError as err:
                job.status, job.error, job.error_status = "failed", err.message, err.status
            except Exception as err:  # noqa: BLE001 - one bad job must not stop the worker
                log.exception("job %s failed", job.id)
                job.status, job.error = "failed", f"internal error: {type(err).__name__}: {err}"
            job.finished, job.data = time.monotonic(), b""
            with self.lock:
                self.running -= 1
                self.recent_seconds.append(job.finished - job.started)
                self.jobs.move_to_end(job.id)
                self._evict()
            job.done.set()
            if self.todo.empty():
                release_free_memory()
            log.info("job %s %s %dx%d in %.1f s", job.id, job.status, job.width, job.height, job.finished - job.started)

    def _run(self, job: Job) -> None:
        from restorevar.images.load import to_pil
        from restorevar.inference.restorer import RestoreOptions, restore_array

        loaded = decode_upload(job.data, self.config.max_pixels)
        job.data, job.warnings = b"", list(loaded.warnings)
        job.input_png = preview_png(loaded.rgb)
        if job.task == "analysis":
            job.tiles_total = 1
            job.result_png = encode_png(analysis_image(self.model, loaded))
            job.tiles_done = 1
            return

        def progress(done: int, total: int) -> None:
            job.tiles_done, job.tiles_total = done, total

        options = RestoreOptions(resize=job.use_resize, batch_size=self.config.batch_size)
        rgb = restore_array(self.model, loaded.rgb, options, progress=progress)
        job.tiles_done = job.tiles_total = max(job.tiles_total, 1)
        job.result_png = encode_png(to_pil(rgb, loaded), loaded.icc_profile)

    def _evict(self) -> None:
        """Drop finished jobs beyond the count, byte and age bounds, oldest first (caller holds the lock)."""
        now, config = time.monotonic(), self.config
        finished = [job for job in self.jobs.values() if job.finished is not None]
        count, total_bytes = len(finished), sum(len(job.result_png) + len(job.input_png) for job in finished)
        for job in finished:  # oldest first: finished jobs are moved to the end when they finish
            too_many = count > config.max_results or total_bytes > config.max_result_mb * 2**20
            if not too_many and now - job.finished < config.result_ttl_s:
                break
            del self.jobs[job.id]
            count, total_bytes = count - 1, total_bytes - len(job.result_png) - len(job.input_png)

    def forget(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)

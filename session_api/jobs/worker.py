"""The offline worker: claims jobs, renders them with renderer.offline, stores the MP4.

Rendering is synchronous and CPU-heavy, so it runs in the worker's own thread pool; the event
loop keeps the lease alive meanwhile. The renderer's progress callback is also where a timeout
or a lost lease stops the render.

Shutdown (SIGTERM) is `drain()`: stop claiming, let the jobs in hand finish for a while, then hand
the rest back to the queue (pending again, the attempt not counted) so another worker takes them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from renderer.errors import RendererInputError
from renderer.face import FaceAsset
from renderer.options import RendererOptions
from renderer.settings import load_renderer_options
from session_api.db.models import Job
from session_api.jobs.queue import ClaimedJob, JobQueue
from session_api.metrics import Metrics
from session_api.storage import Storage
from session_api.webhooks import completed_body

logger = logging.getLogger("session_api")

OUTPUT_NAME = "output.mp4"


class RenderOutcome(Protocol):
    @property
    def frames(self) -> int: ...
    @property
    def duration_s(self) -> float: ...


class RenderFn(Protocol):
    def __call__(
        self,
        audio: str | Path,
        face: FaceAsset,
        out: str | Path,
        *,
        options: RendererOptions | None = ...,
        on_progress: Callable[[float], None] | None = ...,
    ) -> RenderOutcome: ...


class JobTimedOut(Exception):
    pass


class LeaseLost(Exception):
    pass


class _Progress:
    """Shared between the render thread (writer) and the event loop (reader)."""

    def __init__(self, deadline: float) -> None:
        self.fraction = 0.0
        self.deadline = deadline
        self.lost = threading.Event()

    def __call__(self, fraction: float) -> None:
        self.fraction = fraction
        if self.lost.is_set():
            raise LeaseLost()
        if time.monotonic() > self.deadline:
            raise JobTimedOut()


def default_render(max_audio_s: float | None = None) -> RenderFn:
    """renderer.offline.render_file, stopping at `max_audio_s` of audio (the submit limit)."""
    from renderer.offline import render_file

    render: RenderFn = functools.partial(render_file, max_duration_s=max_audio_s)
    return render


def output_key(job_id: str) -> str:
    return f"jobs/{job_id}/{OUTPUT_NAME}"


class JobWorker:
    def __init__(
        self,
        *,
        queue: JobQueue,
        storage: Storage,
        public_url: str,
        concurrency: int = 1,
        timeout_s: float = 300.0,
        heartbeat_s: float = 5.0,
        poll_interval_s: float = 0.5,
        result_ttl_s: int = 86400,
        options: RendererOptions | None = None,
        render: RenderFn | None = None,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        work_dir: Path | None = None,
        max_audio_s: float | None = None,
    ) -> None:
        self.queue = queue
        self.max_audio_s = max_audio_s
        self.storage = storage
        self.public_url = public_url
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.poll_interval_s = poll_interval_s
        self.result_ttl_s = result_ttl_s
        # ATLAS_RENDERER_* unless the caller passes its own (as `atlas render` reads them)
        self.options = options or load_renderer_options()
        self._render = render
        self.metrics = metrics
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.work_dir = work_dir
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="atlas-render"
        )
        self._stop = asyncio.Event()
        self.busy = 0
        # Jobs in hand, with the flag that stops their render thread (drain/aclose release them).
        self._inflight: dict[str, _Progress] = {}
        # Set when run() has started, and again when all its slots have returned.
        self._running = False
        self._finished = asyncio.Event()
        self.release_grace_s = 10.0

    @property
    def render(self) -> RenderFn:
        if self._render is None:
            self._render = default_render(self.max_audio_s)
        return self._render

    async def run(self) -> None:
        """Process jobs with `concurrency` slots until drain() or aclose()."""
        self._running = True
        self._finished.clear()
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.concurrency):
                    group.create_task(self._slot())
        finally:
            self._finished.set()

    async def _slot(self) -> None:
        while not self._stop.is_set():
            try:
                worked = await self.run_once()
            except Exception:
                logger.exception("worker loop error")
                worked = False
            if not worked:
                try:
                    await asyncio.wait_for(self._stop.wait(), self.poll_interval_s)
                except TimeoutError:
                    pass

    async def run_once(self) -> bool:
        """Claim and process one job; False when the queue was empty."""
        job = await self.queue.claim(self.worker_id)
        if job is None:
            return False
        self.busy += 1
        try:
            await self._process(job)
        finally:
            self.busy -= 1
        return True

    async def _process(self, job: ClaimedJob) -> None:
        started = time.monotonic()
        logger.info("job claimed", extra={"job_id": job.id, "attempt": job.attempt})
        progress = _Progress(time.monotonic() + self.timeout_s)
        self._inflight[job.id] = progress
        try:
            await self._process_claimed(job, progress, started)
        finally:
            self._inflight.pop(job.id, None)

    async def _process_claimed(self, job: ClaimedJob, progress: _Progress, started: float) -> None:
        with tempfile.TemporaryDirectory(prefix="atlas-job-", dir=self.work_dir) as tmp:
            try:
                outcome, out_path = await self._render_job(job, Path(tmp), progress)
            except LeaseLost:
                logger.warning("job lease lost", extra={"job_id": job.id})
                return
            except RendererInputError as exc:
                await self._finish_failed(job, retry=False, error=str(exc), code="invalid_input")
                self._observe("invalid_input", started)
                return
            except JobTimedOut:
                msg = f"Processing timed out after {self.timeout_s:g} s."
                await self._finish_failed(job, retry=False, error=msg, code="generation_failed")
                self._observe("timeout", started)
                return
            except Exception:
                logger.exception("job attempt failed", extra={"job_id": job.id})
                await self._finish_failed(job, retry=True)
                self._observe("error", started)
                return
            await self._finish_completed(job, outcome, out_path)
            self._observe("completed", started)

    async def _render_job(
        self, job: ClaimedJob, tmp: Path, progress: _Progress
    ) -> tuple[RenderOutcome, Path]:
        audio_path, image_path, out_path = tmp / "audio", tmp / "image", tmp / OUTPUT_NAME
        await self.storage.get_file(job.audio_key, audio_path)
        await self.storage.get_file(job.image_key, image_path)
        if progress.lost.is_set():  # released while downloading
            raise LeaseLost()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._executor, self._render_blocking, audio_path, image_path, out_path, progress
        )
        beat = asyncio.create_task(self._heartbeat(job, progress))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            progress.lost.set()  # the thread stops at its next progress report
            raise JobTimedOut() from None
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        if progress.lost.is_set():
            raise LeaseLost()
        return outcome, out_path

    def _render_blocking(
        self, audio: Path, image: Path, out: Path, progress: _Progress
    ) -> RenderOutcome:
        face = FaceAsset.prepare(image.read_bytes(), options=self.options)
        return self.render(audio, face, out, options=self.options, on_progress=progress)

    async def _heartbeat(self, job: ClaimedJob, progress: _Progress) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            owned = await self.queue.heartbeat(
                job.id, self.worker_id, progress=int(progress.fraction * 100)
            )
            if not owned:
                progress.lost.set()
                return

    async def _finish_completed(self, job: ClaimedJob, outcome: RenderOutcome, out: Path) -> None:
        key = output_key(job.id)
        try:
            await self.storage.put_file(key, out, content_type="video/mp4")
            url = await self.storage.presign(
                key, expires_in=self.result_ttl_s, filename=f"{job.id}.mp4"
            )
        except Exception:
            logger.exception("job output upload failed", extra={"job_id": job.id})
            await self._finish_failed(job, retry=True)
            return

        def body(row: Job) -> str:
            return completed_body(
                row, url=url, expires_in=self.result_ttl_s, public_url=self.public_url
            )

        size = (await asyncio.to_thread(out.stat)).st_size
        done = await self.queue.complete(
            job.id,
            self.worker_id,
            output_key=key,
            output_size=size,
            duration=float(outcome.duration_s),
            result_ttl_s=self.result_ttl_s,
            webhook=body,
        )
        if done:
            await self._drop_inputs(job)
            logger.info("job completed", extra={"job_id": job.id})
        else:
            await self.storage.delete(key)

    async def _finish_failed(
        self, job: ClaimedJob, *, retry: bool, error: str | None = None, code: str | None = None
    ) -> None:
        kwargs: dict[str, Any] = {}
        if error is not None:
            kwargs["error"] = error
        if code is not None:
            kwargs["error_code"] = code
        status = await self.queue.fail(job.id, self.worker_id, retry=retry, **kwargs)
        if status == "failed":
            await self._drop_inputs(job)
        logger.info("job attempt ended", extra={"job_id": job.id, "status": status})

    async def _drop_inputs(self, job: ClaimedJob) -> None:
        try:
            await self.storage.delete(job.audio_key, job.image_key)
        except Exception:
            logger.warning("input cleanup failed", extra={"job_id": job.id})

    def _observe(self, outcome: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.job_duration.labels(outcome=outcome).observe(time.monotonic() - started)

    async def drain(self, timeout_s: float = 0.0, *, abort: asyncio.Event | None = None) -> None:
        """Stop claiming; give the jobs in hand `timeout_s` (or until `abort`) to finish, then
        release the rest to the queue and wait briefly for their render threads to stop."""
        self._stop.set()
        if not self._running:
            await self._release_inflight()
            return
        if self._inflight:
            logger.info(
                "worker draining", extra={"jobs": len(self._inflight), "timeout_s": timeout_s}
            )
        if await _wait(self._finished, timeout_s, abort):
            return
        await self._release_inflight()
        await _wait(self._finished, self.release_grace_s, None)

    async def _release_inflight(self) -> None:
        for job_id, progress in list(self._inflight.items()):
            progress.lost.set()  # the render thread stops at its next progress report
            try:
                released = await self.queue.release(job_id, self.worker_id)
            except Exception:
                # The lease then runs out and the queue retries the job.
                logger.exception("job release failed", extra={"job_id": job_id})
                continue
            logger.info("job released", extra={"job_id": job_id, "released": released})

    async def aclose(self) -> None:
        await self.drain(0.0)
        self._executor.shutdown(wait=False, cancel_futures=True)


async def _wait(event: asyncio.Event, timeout_s: float, abort: asyncio.Event | None) -> bool:
    """True when `event` is set within `timeout_s`; False on timeout or when `abort` is set."""
    if event.is_set():
        return True
    waiters = [asyncio.ensure_future(event.wait())]
    if abort is not None:
        waiters.append(asyncio.ensure_future(abort.wait()))
    try:
        await asyncio.wait(
            waiters, timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return event.is_set()


class ResultCleaner:
    """Deletes results older than their TTL, so /result answers no_output."""

    def __init__(self, *, queue: JobQueue, storage: Storage, interval_s: float = 300.0) -> None:
        self.queue = queue
        self.storage = storage
        self.interval_s = interval_s
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.clean_once()
            except Exception:
                logger.exception("result cleanup error")
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def clean_once(self) -> int:
        expired = await self.queue.expired_results()
        for job_id, key in expired:
            await self.storage.delete(key)
            await self.queue.forget_output(job_id)
        return len(expired)

    async def aclose(self) -> None:
        self._stop.set()

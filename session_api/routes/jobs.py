"""POST /v1/generate and the job endpoints."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from session_api.db.models import Job
from session_api.deps import CallerDep, ServicesDep
from session_api.errors import (
    InvalidCallbackUrl,
    InvalidInput,
    MonthlyCapExceeded,
    NoOutput,
    NotFound,
    NotReady,
    QueueUnavailable,
    StorageUnavailable,
    UnsupportedMediaType,
    UrlGenerationFailed,
    ValidationFailed,
)
from session_api.jobs.queue import NewJob, new_job_id
from session_api.media import (
    AUDIO_TYPES,
    IMAGE_TYPES,
    MediaRejected,
    MediaUnsupported,
    check_audio,
    check_image_bounded,
    sniff_audio_format,
)
from session_api.schemas import (
    JobAccepted,
    JobDetail,
    JobInput,
    JobList,
    JobOutput,
    JobResult,
    JobSummary,
    JobTiming,
    iso_z,
)
from session_api.services import Services
from session_api.ssrf import UrlRefused, check_url, parse_networks
from session_api.storage import StorageFailure
from session_api.uploads import UploadedPart, new_upload_dir, receive_parts

logger = logging.getLogger("session_api")
router = APIRouter()

_WANTED = frozenset({"audio", "image"})
# Far past any real history, and inside the 64-bit integers SQLite and PostgreSQL bind.
MAX_OFFSET = 1_000_000_000


@router.post("/v1/generate", status_code=202)
async def generate(
    request: Request,
    caller: CallerDep,
    services: ServicesDep,
    x_callback_url: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    settings = services.settings
    callback = None
    if x_callback_url:
        try:
            callback = check_url(
                x_callback_url.strip(), parse_networks(settings.webhook_allow_networks)
            )
        except UrlRefused as exc:
            raise InvalidCallbackUrl(str(exc)) from exc
    cap = caller.key.monthly_cap
    if cap is not None and await _usage(services, caller.key.id) >= cap:
        raise MonthlyCapExceeded()

    with new_upload_dir(services.upload_dir if services.upload_dir.is_dir() else None) as tmp:
        parts = await receive_parts(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            directory=Path(tmp),
            max_total=settings.max_upload_bytes,
            wanted=_WANTED,
            idle_timeout_s=settings.upload_idle_timeout_s,
            total_timeout_s=settings.upload_timeout_s,
        )
        audio, image = _required(parts)
        audio_fmt, image_fmt = await _validate(services, audio, image)
        job_id = new_job_id()
        audio_key = f"jobs/{job_id}/audio.{audio_fmt}"
        image_key = f"jobs/{job_id}/image.{'jpg' if image_fmt == 'jpeg' else image_fmt}"
        try:
            await services.storage.put_file(
                audio_key, audio.path, content_type=AUDIO_TYPES[audio_fmt]
            )
            await services.storage.put_file(
                image_key, image.path, content_type=IMAGE_TYPES[image_fmt]
            )
        except StorageFailure as exc:
            raise StorageUnavailable() from exc
    new = NewJob(
        key_id=caller.key.id,
        audio_key=audio_key,
        image_key=image_key,
        audio_size=audio.size,
        image_size=image.size,
        callback_url=callback,
    )
    try:
        await services.queue.submit(job_id, new, monthly_cap=cap)
    except (MonthlyCapExceeded, SQLAlchemyError, OSError) as exc:
        await _discard(services, audio_key, image_key)
        if isinstance(exc, MonthlyCapExceeded):
            raise
        raise QueueUnavailable() from exc
    logger.info("job submitted", extra={"job_id": job_id, "key_id": caller.key.id})
    body = JobAccepted(
        job_id=job_id,
        status="pending",
        message=f"Job accepted. Poll GET /v1/jobs/{job_id} for status.",
    )
    return JSONResponse(body.model_dump(), status_code=202)


async def _usage(services: Services, key_id: int) -> int:
    try:
        return await services.queue.usage(key_id)
    except (SQLAlchemyError, OSError) as exc:
        raise QueueUnavailable() from exc


def _required(parts: dict[str, UploadedPart]) -> tuple[UploadedPart, UploadedPart]:
    missing = [name for name in ("audio", "image") if name not in parts]
    if missing:
        raise ValidationFailed("Missing required fields: " + ", ".join(missing) + ".")
    audio, image = parts["audio"], parts["image"]
    for part in (audio, image):
        if part.size == 0:
            raise InvalidInput(f"The {part.name} file is empty.")
    return audio, image


async def _validate(
    services: Services, audio: UploadedPart, image: UploadedPart
) -> tuple[str, str]:
    audio_fmt = sniff_audio_format(audio.head)
    if audio_fmt is None:
        raise UnsupportedMediaType("Unsupported audio format: use wav, mp3, ogg or webm.")
    from renderer.image_io import sniff_image_format

    image_fmt = sniff_image_format(image.head)
    if image_fmt is None:
        raise UnsupportedMediaType("Unsupported image format: use PNG, JPEG or WebP.")
    try:
        await asyncio.to_thread(
            check_audio, audio.path, max_seconds=services.settings.max_audio_seconds
        )
        await check_image_bounded(
            image.path, services.options, slots=services.settings.image_decode_concurrency
        )
    except MediaUnsupported as exc:
        raise UnsupportedMediaType(str(exc)) from exc
    except MediaRejected as exc:
        raise InvalidInput(str(exc)) from exc
    return audio_fmt, image_fmt


async def _discard(services: Services, *keys: str) -> None:
    try:
        await services.storage.delete(*keys)
    except StorageFailure:
        logger.warning("upload cleanup failed")


@router.get("/v1/jobs")
async def list_jobs(
    caller: CallerDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobList:
    jobs, count = await services.queue.list_for_key(
        key_id=caller.key.id, limit=limit, offset=offset
    )
    return JobList(
        jobs=[
            JobSummary(
                job_id=job.id,
                type=job.type,
                status=job.status,
                created_at=iso_z(job.created_at),
                completed_at=iso_z(job.completed_at),
                latency_ms=_latency_ms(job),
                output_duration=job.output_duration,
                error_code=job.error_code,
            )
            for job in jobs
        ],
        count=count,
        limit=limit,
        offset=offset,
    )


@router.get("/v1/jobs/{job_id}", response_model_exclude_none=False)
async def get_job(job_id: str, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    job = await _own_job(services, job_id, caller.key.id)
    detail = JobDetail(
        job_id=job.id,
        type=job.type,
        status=job.status,
        queue_position=await services.queue.queue_position(job),
        progress=_progress(job),
        input=JobInput(audio_size=job.audio_size, image_size=job.image_size),
        output=JobOutput(
            duration=job.output_duration,
            size_bytes=job.output_size,
            has_result=True if job.status == "completed" and job.output_key else None,
        ),
        error=job.error,
        error_code=job.error_code,
        timing=JobTiming(
            created_at=iso_z(job.created_at),
            started_at=iso_z(job.started_at),
            completed_at=iso_z(job.completed_at),
            latency_ms=_latency_ms(job),
        ),
    )
    body = detail.model_dump(exclude={"url", "expires_in", "result_url"})
    if job.status != "completed" or not job.output_key:
        body["output"].pop("has_result")
    else:
        result = await _result(services, job)
        body.update(url=result.url, expires_in=result.expires_in)
        body["result_url"] = f"/v1/jobs/{job.id}/result"
    return JSONResponse(body)


@router.get("/v1/jobs/{job_id}/result")
async def get_result(job_id: str, caller: CallerDep, services: ServicesDep) -> JobResult:
    job = await _own_job(services, job_id, caller.key.id)
    if job.status in {"pending", "processing"}:
        raise NotReady()
    if job.status != "completed" or not job.output_key:
        raise NoOutput()
    return await _result(services, job)


async def _own_job(services: Services, job_id: str, key_id: int) -> Job:
    job = await services.queue.get(job_id, key_id=key_id)
    if job is None:  # another key's job is "not found" too
        raise NotFound("Job not found.")
    return job


async def _result(services: Services, job: Job) -> JobResult:
    assert job.output_key is not None
    ttl = services.settings.result_ttl_s
    expires_in = ttl
    if job.result_expires_at is not None:
        remaining = int((job.result_expires_at - services.queue.clock()).total_seconds())
        expires_in = max(1, min(ttl, remaining))
    try:
        url = await services.storage.presign(
            job.output_key, expires_in=expires_in, filename=f"{job.id}.mp4"
        )
    except Exception as exc:
        raise UrlGenerationFailed() from exc
    return JobResult(url=url, content_type="video/mp4", expires_in=expires_in)


def _latency_ms(job: Job) -> int | None:
    if job.started_at is None or job.completed_at is None:
        return None
    return int((job.completed_at - job.started_at).total_seconds() * 1000)


def _progress(job: Job) -> int:
    if job.status == "completed":
        return 100
    return job.progress

"""Helpers for the API tests: an app with its client, auth headers, upload bodies."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from session_api.auth import NewKey, create_key
from session_api.services import Services


def no_face_png() -> bytes:
    rng = np.random.default_rng(0)
    pixels = (rng.random((256, 256, 3)) * 40 + 100).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def new_key(self, name: str = "test", **kwargs: Any) -> NewKey:
        return await create_key(self.services.db, name=name, **kwargs)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(audio: bytes, image: bytes, **extra: tuple[str, bytes, str]) -> dict[str, Any]:
    files: dict[str, Any] = {
        "audio": ("speech.wav", audio, "audio/wav"),
        "image": ("face.jpg", image, "image/jpeg"),
    }
    files.update(extra)
    return files

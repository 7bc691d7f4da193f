"""Object storage: local files behind HMAC-signed expiring URLs, or S3 with presigned URLs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from session_api.config import Settings


class StorageFailure(Exception):
    """The storage backend could not be reached or refused the operation."""


class ObjectMissing(StorageFailure):
    pass


class Storage(Protocol):
    async def put_file(self, key: str, path: Path, *, content_type: str) -> None: ...
    async def get_file(self, key: str, dest: Path) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def presign(self, key: str, *, expires_in: int, filename: str | None = None) -> str: ...
    async def check(self) -> None: ...
    async def aclose(self) -> None: ...


def _validate_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise ValueError("invalid storage key")
    return key


@dataclass(frozen=True, slots=True)
class UrlSigner:
    """HMAC-SHA256 over "key\\nexpires"; what the local download route checks."""

    secret: bytes
    clock: Callable[[], float] = time.time

    def sign(self, key: str, expires: int) -> str:
        msg = f"{key}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: int, signature: str) -> bool:
        expected = self.sign(key, expires).encode()
        # Bytes on both sides: compare_digest refuses str with non-ASCII characters (a 500).
        given = signature.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(expected, given) and expires >= self.clock()


class LocalStorage:
    def __init__(self, *, root: Path, public_url: str, signer: UrlSigner) -> None:
        self.root = root
        self.public_url = public_url.rstrip("/")
        self.signer = signer

    def path_of(self, key: str) -> Path:
        return self.root / _validate_key(key)

    async def put_file(self, key: str, path: Path, *, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, path)

    def _put(self, key: str, path: Path) -> None:
        dest = self.path_of(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageFailure("local storage write failed") from exc

    async def get_file(self, key: str, dest: Path) -> None:
        src = self.path_of(key)
        try:
            await asyncio.to_thread(shutil.copyfile, src, dest)
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StorageFailure("local storage read failed") from exc

    async def delete(self, *keys: str) -> None:
        await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            path = self.path_of(key)
            try:
                path.unlink(missing_ok=True)
                path.parent.rmdir()  # jobs/<id>/ once empty
            except OSError:
                pass

    async def presign(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        expires = int(self.signer.clock()) + expires_in
        query = {"expires": str(expires), "sig": self.signer.sign(_validate_key(key), expires)}
        return f"{self.public_url}/v1/files/{quote(key)}?{urlencode(query)}"

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageFailure("local storage unavailable") from exc

    async def aclose(self) -> None:
        return None


class S3Storage:
    """boto3 (sync) run in threads; one client, thread-safe per boto3's documentation."""

    def __init__(
        self, *, bucket: str, prefix: str, endpoint_url: str | None, client: Any = None
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"} if endpoint_url else {},
            ),
        )

    def _full(self, key: str) -> str:
        key = _validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectMissing(code) from exc
            raise StorageFailure(code or "s3 error") from exc
        except BotoCoreError as exc:
            raise StorageFailure(type(exc).__name__) from exc

    async def put_file(self, key: str, path: Path, *, content_type: str) -> None:
        await self._call(
            self._client.upload_file,
            str(path),
            self.bucket,
            self._full(key),
            ExtraArgs={"ContentType": content_type},
        )

    async def get_file(self, key: str, dest: Path) -> None:
        await self._call(self._client.download_file, self.bucket, self._full(key), str(dest))

    async def delete(self, *keys: str) -> None:
        if keys:
            objects = [{"Key": self._full(k)} for k in keys]
            await self._call(
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": objects, "Quiet": True},
            )

    async def presign(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self._full(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = await self._call(
            self._client.generate_presigned_url,
            "get_object",
            Params=params,
            ExpiresIn=expires_in,
        )
        return url

    async def check(self) -> None:
        await self._call(self._client.head_bucket, Bucket=self.bucket)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)


def create_storage(settings: Settings) -> Storage:
    url = settings.resolved_storage_url
    parts = urlsplit(url)
    if settings.storage_kind == "s3":
        return S3Storage(
            bucket=parts.netloc, prefix=parts.path, endpoint_url=settings.s3_endpoint_url
        )
    return LocalStorage(
        root=Path(parts.path),
        public_url=settings.public_url,
        signer=UrlSigner(settings.secret_key.get_secret_value().encode()),
    )

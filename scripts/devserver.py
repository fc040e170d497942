"""Run the web server, one Celery worker and beat in the foreground; stop them all on Ctrl-C.

Used by `make run`. Each child gets its own process group so that one signal from here reaches
the child and anything it forked (runserver, celery's pool), and so that a child dying on its
own stops the others instead of leaving a half-running stack behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 15.0  # a warm Celery shutdown finishes the scan in hand; acks_late covers a kill


def commands(port: str) -> dict[str, list[str]]:
    """The children to run, by name."""
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "clinic_platform"]
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    return {
        "web": [py, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        # One process, prefetch 1: the model is loaded once and holds most of the memory.
        # One worker for both queues locally: scans ("inference") and the sweep beat sends ("maintenance").
        "worker": [*celery, "worker", "-Q", "inference,maintenance", "--concurrency", "1",
                   "--hostname", "local@%h", "--loglevel", "INFO"],
        "beat": [*celery, "beat", "--loglevel", "INFO",
                 "--schedule", str(var / "celerybeat-schedule")],
        # The DICOM receiver (C-STORE SCP) on DICOM_PORT, this machine only (docs/pacs.md).
        "dicom": [py, "manage.py", "dicom_receiver", "--address", "127.0.0.1"],
    }


def stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every live child's group, wait a grace period, then SIGKILL what is left."""
    for proc in children.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    port = os.environ.get("PORT", "8000")
    os.chdir(ROOT)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands(port).items():
        children[name] = subprocess.Popen(cmd, start_new_session=True)  # noqa: S603 (fixed argv)
    broker = "Redis" if os.environ.get("REDIS_URL") else "embedded filesystem broker (var/)"
    print(f"\n  Clinic platform on http://127.0.0.1:{port}/  (queue: {broker}). Ctrl-C stops all.\n",
          flush=True)

    exit_code = 0
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                print(f"devserver: {name} exited with {proc.returncode}; stopping the rest",
                      file=sys.stderr, flush=True)
                exit_code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)

    print("devserver: stopping web, worker and beat...", flush=True)
    stop_all(children)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

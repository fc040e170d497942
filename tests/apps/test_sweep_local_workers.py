"""The sweep's check for a worker process of its own host that is gone (`make run`'s filesystem
queue; tests/e2e/test_local_queue_worker_kill.py kills a real worker): a live claimant keeps its
scan, a gone one loses it at once, and with Redis (the broker redelivers) nothing is checked."""

import subprocess
import sys

from apps.scans import services as scan_services
from apps.scans.models import Scan, ScanStatus


def test_a_live_claimant_keeps_its_scan_a_gone_one_loses_it_at_once(north, settings, broker) -> None:
    settings.SCAN_SWEEP_CHECKS_LOCAL_WORKERS = True
    scan = Scan.objects.create(
        case=north.case, uploaded_by=north.staff, sha256="0" * 64, size_bytes=1, width=1, height=1, format="PNG",
        image="scans/x.png",
    )
    claimed = scan_services.scan_claim(scan_id=scan.pk)
    assert claimed.claimed_by == scan_services.worker_identity()
    report = scan_services.scans_requeue_stale()
    assert report.requeued == 0
    assert Scan.objects.get(pk=scan.pk).status == ScanStatus.PROCESSING
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    Scan.objects.filter(pk=scan.pk).update(claimed_by=f"{claimed.claimed_by.rpartition(':')[0]}:{gone.stdout.strip()}")
    settings.SCAN_SWEEP_CHECKS_LOCAL_WORKERS = False  # Redis: the broker redelivers, no check
    assert scan_services.scans_requeue_stale().requeued == 0
    settings.SCAN_SWEEP_CHECKS_LOCAL_WORKERS = True
    assert scan_services.scans_requeue_stale().requeued == 1


def test_a_zombie_claimant_is_gone() -> None:
    """A worker killed together with its parent stays a zombie where PID 1 never reaps (a
    container's init): it answers signal 0 but runs nothing, so it counts as gone."""
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        identity = f"{scan_services.worker_identity().rpartition(':')[0]}:{child.pid}"
        while not scan_services._process_gone(identity):  # exited, not yet reaped: a zombie
            assert time.monotonic() < deadline, "the exited child never read as gone"
            time.sleep(0.05)
        assert not scan_services._process_gone(scan_services.worker_identity())  # this process runs
    finally:
        child.wait()

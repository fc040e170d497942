"""Enqueue after commit, broker outages, and the stale-scan sweep."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_requeue_stale, scans_upload
from clinic_platform.celery import app as celery_app
from tests.testkit.data import upload
from tests.testkit.scans import png_bytes, real_scan_bytes


def test_scans_are_published_only_after_the_commit(north, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        scans = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes()), upload(png_bytes())]
        ).scans
    assert len(callbacks) == 1
    assert broker() == []  # nothing left before the commit
    callbacks[0]()
    published = broker()
    assert [(p.task, p.args, p.routing_key) for p in published] == [
        ("workers.tasks.analyze_scan", [scans[0].pk], "inference"),
        ("workers.tasks.analyze_scan", [scans[1].pk], "inference"),
    ]
    assert all(s.enqueued_at is not None for s in Scan.objects.filter(pk__in=[s.pk for s in scans]))


def test_a_rolled_back_upload_publishes_nothing(north, broker, django_capture_on_commit_callbacks):
    @transaction.atomic
    def upload_then_fail():
        scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes())])
        raise ValidationError("the caller's own check failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(ValidationError):
        upload_then_fail()
    assert callbacks == []
    assert broker() == []
    assert north.case.scans.count() == 1


@pytest.fixture
def broker_down():
    """Point the Celery app at a port where nothing listens, as when Redis is down."""
    conf = celery_app.conf
    old = conf.broker_url, conf.broker_write_url, celery_app._pool, celery_app.amqp._producer_pool
    conf.broker_url = conf.broker_write_url = "redis://127.0.0.1:9/0"
    celery_app._pool = celery_app.amqp._producer_pool = None
    yield
    conf.broker_url, conf.broker_write_url, celery_app._pool, celery_app.amqp._producer_pool = old


def test_upload_succeeds_and_waits_when_the_broker_is_down(north, broker_down, django_capture_on_commit_callbacks):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        scans = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes()) for _ in range(3)]
        ).scans
    # One connection attempt for the batch, not one per scan.
    assert time.monotonic() - started < settings.CELERY_BROKER_CONNECTION_TIMEOUT + 2
    for scan in scans:
        scan.refresh_from_db()
        assert scan.status == ScanStatus.QUEUED
        assert scan.enqueued_at is None  # the sweep will publish it


def _age(scan, **fields):
    Scan.objects.filter(pk=scan.pk).update(**fields)


def test_sweep_republishes_stuck_scans_only(north, broker, django_capture_on_commit_callbacks, settings):
    settings.SCAN_MAX_ATTEMPTS = 2
    with django_capture_on_commit_callbacks(execute=False):
        lost, fresh, never_sent, dead_worker, hopeless = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes()) for _ in range(5)]
        ).scans
    long_ago = timezone.now() - timedelta(minutes=30)
    dead_since = timezone.now() - timedelta(seconds=settings.SCAN_TASK_TIME_LIMIT + 120)
    _age(lost, queued_at=long_ago, enqueued_at=long_ago)
    _age(fresh, enqueued_at=timezone.now())
    _age(never_sent, queued_at=long_ago, enqueued_at=None)
    _age(dead_worker, status=ScanStatus.PROCESSING, started_at=dead_since, attempts=1)
    _age(hopeless, status=ScanStatus.PROCESSING, started_at=dead_since, attempts=2)

    report = scans_requeue_stale(older_than=timedelta(minutes=5))

    assert (report.requeued, report.published, report.failed) == (3, 3, 1)
    assert sorted(p.args[0] for p in broker()) == sorted([lost.pk, never_sent.pk, dead_worker.pk])
    states = dict(Scan.objects.values_list("pk", "status"))
    assert states[dead_worker.pk] == ScanStatus.QUEUED
    assert states[hopeless.pk] == ScanStatus.FAILED
    assert "2 attempts" in Scan.objects.get(pk=hopeless.pk).error
    assert states[north.scan.pk] == ScanStatus.DONE
    # Just published: a second sweep leaves them alone.
    assert scans_requeue_stale(older_than=timedelta(minutes=5)).requeued == 0


def test_sweep_command(north, broker, django_capture_on_commit_callbacks, capsys):
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes())]).scans
    _age(scan, queued_at=timezone.now() - timedelta(minutes=10))
    call_command("requeue_stale_scans", "--minutes", "5")
    assert "requeued=1 published=1" in capsys.readouterr().out
    assert [p.args for p in broker()] == [[scan.pk]]


def test_beat_runs_the_sweep_task():
    schedule = celery_app.conf.beat_schedule
    assert any(entry["task"] == "workers.tasks.requeue_stale_scans" for entry in schedule.values())
    from workers import tasks

    assert tasks.requeue_stale_scans.name == "workers.tasks.requeue_stale_scans"


def test_the_sweep_has_its_own_queue_and_expires_after_one_period(broker, maintenance_broker):
    """The sweep must not wait behind a backlog of scans, nor need a model worker to run."""
    from workers import tasks

    tasks.requeue_stale_scans.apply_async()
    tasks.analyze_scan.apply_async(args=[123])
    assert [(p.task, p.routing_key) for p in maintenance_broker()] == [
        ("workers.tasks.requeue_stale_scans", "maintenance")
    ]
    assert [(p.task, p.args, p.routing_key) for p in broker()] == [("workers.tasks.analyze_scan", [123], "inference")]
    (entry,) = [e for e in celery_app.conf.beat_schedule.values() if e["task"] == "workers.tasks.requeue_stale_scans"]
    assert entry["options"]["expires"] == entry["schedule"] == settings.SCAN_SWEEP_INTERVAL_SECONDS

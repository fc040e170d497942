"""The production settings, run for real: `manage.py check --deploy --fail-level WARNING` is
clean, and gunicorn started with the compose stack's web environment answers the compose health
probe (run as written in docker-compose.yml) although DJANGO_ALLOWED_HOSTS names the real host,
enforces the host list everywhere else, redirects plain HTTP, and sends HSTS and the CSP."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.testkit.processes import gunicorn_server

ROOT = Path(__file__).resolve().parents[2]
HOST = "clinic.example.org"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The compose web service's environment with its ${...} filled in (no test settings)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CELERY_"))}
    return {
        **clean,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": HOST,
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
        "DJANGO_BEHIND_TLS_PROXY": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "STATIC_ROOT": str(tmp_path / "static"),
        **extra,
    }


def test_check_deploy_is_clean_under_production_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env(tmp_path), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _setting(env: dict[str, str], expression: str) -> str:
    probe = f"import django; django.setup(); from django.conf import settings; print({expression})"
    env = {**env, "DJANGO_SETTINGS_MODULE": "clinic_platform.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_presigned_media_redirect_lets_images_come_from_the_bucket_origin_only(tmp_path: Path) -> None:
    streaming = production_env(tmp_path, S3_ENDPOINT_URL="https://s3.internal:9000", S3_BUCKET="clinic-media")
    policy = "settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src']"
    assert _setting(streaming, policy) == "[\"'self'\"]"
    redirecting = {**streaming, "MEDIA_PRESIGNED_REDIRECT": "1"}
    assert _setting(redirecting, policy) == "[\"'self'\", 'https://s3.internal:9000']"


def test_only_the_migrate_service_names_a_runtime_role_to_grant(tmp_path: Path) -> None:
    """The compose migrate service's DATABASE_RUNTIME_ROLE reaches the setting that
    apps/audit/db_roles.py grants after migrating; the web's environment names none."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    role = services["migrate"]["environment"]["DATABASE_RUNTIME_ROLE"]
    assert _setting(production_env(tmp_path, DATABASE_RUNTIME_ROLE=role), "settings.DATABASE_RUNTIME_ROLE") == role
    assert "DATABASE_RUNTIME_ROLE" not in services["web"]["environment"]
    assert _setting(production_env(tmp_path), "repr(settings.DATABASE_RUNTIME_ROLE)") == "''"


def test_proxy_header_is_trusted_only_behind_the_proxy(tmp_path: Path) -> None:
    behind = production_env(tmp_path)
    assert _setting(behind, "settings.SECURE_PROXY_SSL_HEADER") == "('HTTP_X_FORWARDED_PROTO', 'https')"
    exposed = {k: v for k, v in behind.items() if k != "DJANGO_BEHIND_TLS_PROXY"}
    assert _setting(exposed, "settings.SECURE_PROXY_SSL_HEADER") == "None"
    assert int(_setting(behind, "settings.SECURE_HSTS_SECONDS")) >= 31_536_000


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("deploy")
    env = production_env(folder)
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):  # as the image and compose do
        subprocess.run([sys.executable, "manage.py", *step], cwd=ROOT, env=env, check=True, capture_output=True,
                       timeout=300)  # fmt: skip
    with gunicorn_server(env, folder / "gunicorn.log", "--workers", "1") as base:
        yield base


def test_compose_health_probe_works_with_a_real_host_name(gunicorn: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    probe = compose["services"]["web"]["healthcheck"]["test"]
    assert probe[0] == "CMD"
    argv = [sys.executable if part == "python" else part.replace("127.0.0.1:8000", gunicorn.split("//")[1])
            for part in probe[1:]]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_the_pod_address_over_plain_http(gunicorn: str) -> None:
    # As a Kubernetes scrape does: the pod's own address as Host, plain HTTP, no proxy headers.
    scrape = requests.get(f"{gunicorn}/metrics", timeout=10, allow_redirects=False)
    assert scrape.status_code == 200, scrape.text[:500]
    assert "django_http_requests_total_by_view_transport_method_total" in scrape.text
    # Only GET/HEAD are answered early; anything else goes through the host check.
    assert requests.post(f"{gunicorn}/metrics", timeout=10, allow_redirects=False).status_code == 400


def test_production_stack_enforces_hosts_https_hsts_and_csp(gunicorn: str) -> None:
    # Any other path with the container's own address as Host: refused (ALLOWED_HOSTS holds).
    assert requests.get(f"{gunicorn}/login/", timeout=10, allow_redirects=False).status_code == 400
    # Plain HTTP for the real host: redirected to HTTPS.
    plain = requests.get(f"{gunicorn}/login/", headers={"Host": HOST}, timeout=10, allow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{HOST}/login/"
    # Through the proxy (X-Forwarded-Proto: https): the page, with HSTS and a strict CSP.
    page = requests.get(
        f"{gunicorn}/login/", headers={"Host": HOST, "X-Forwarded-Proto": "https"}, timeout=10, allow_redirects=False
    )
    assert page.status_code == 200
    assert "max-age=31536000" in page.headers["Strict-Transport-Security"]
    csp = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "secure" in page.headers.get("Set-Cookie", "secure").lower()

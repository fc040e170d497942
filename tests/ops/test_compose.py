"""docker-compose.yml checked against the settings and the Celery policy (no Docker engine here).

If a check fails after a settings change, change the compose file (or this test's list of
required variables) in the same commit: compose drifting from the settings is what it guards."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.urls import reverse

from workers.celery_policy import INFERENCE_QUEUE

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker-gpu", "worker-cpu", "worker-maintenance", "beat", "migrate")
WORKERS = ("worker-gpu", "worker-cpu")
# What a production container cannot run without (the local defaults are for a laptop).
REQUIRED_ENV = (
    "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL",
    "S3_ENDPOINT_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
)  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def test_services_present(compose: dict[str, Any]) -> None:
    assert {"db", "redis", *APP_SERVICES} <= set(compose["services"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_matches_settings(compose: dict[str, Any], settings_env_names: set[str], name: str) -> None:
    env = compose["services"][name]["environment"]
    unknown = set(env) - settings_env_names
    assert not unknown, f"{name} sets variables the settings never read (typo?): {sorted(unknown)}"
    missing = set(REQUIRED_ENV) - set(env)
    assert not missing, f"{name} lacks {sorted(missing)}"


def test_urls_point_at_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["web"]["environment"]
    assert re.match(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/\d+$", env["REDIS_URL"]), env["REDIS_URL"]
    db = services["db"]["environment"]
    # The runtime role of the database the db service's role script makes (next test).
    runtime = (db["CLINIC_DB_APP"], db["CLINIC_DB_APP_PASSWORD"], db["CLINIC_DB_NAME"])
    assert _database_url(env["DATABASE_URL"]) == runtime


def _database_url(url: str) -> tuple[str, str, str]:
    """(user, password, database) of a DATABASE_URL on the db service."""
    match = re.match(r"postgres(?:ql)?://([^:]+):([^@]+)@db:5432/(\w+)$", url)
    assert match, url
    return match.group(1), match.group(2), match.group(3)


def test_only_migrate_connects_as_the_database_owner(compose: dict[str, Any]) -> None:
    """docs/database-roles.md: the owner role migrates, and names the runtime role to grant; web,
    workers and beat connect as the runtime role, which cannot change the audit trail. The db
    service makes both roles on its first start (tests/ops/test_postgres_roles.py runs the script)."""
    services = compose["services"]
    db = services["db"]["environment"]
    owner, app = db["CLINIC_DB_OWNER"], db["CLINIC_DB_APP"]
    assert len({owner, app, db["POSTGRES_USER"]}) == 3
    passwords = {db["POSTGRES_PASSWORD"], db["CLINIC_DB_OWNER_PASSWORD"], db["CLINIC_DB_APP_PASSWORD"]}
    assert len(passwords) == 3  # three secrets, none reused
    for name in APP_SERVICES:
        env = services[name]["environment"]
        if name == "migrate":
            assert _database_url(env["DATABASE_URL"]) == (owner, db["CLINIC_DB_OWNER_PASSWORD"], db["CLINIC_DB_NAME"])
            assert env["DATABASE_RUNTIME_ROLE"] == app
        else:
            assert _database_url(env["DATABASE_URL"]) == (app, db["CLINIC_DB_APP_PASSWORD"], db["CLINIC_DB_NAME"]), name
            assert "DATABASE_RUNTIME_ROLE" not in env, name
    assert all(not service.get("environment", {}).get("DATABASE_URL", "").startswith(f"postgres://{owner}:")
               for name, service in services.items() if name != "migrate")  # fmt: skip
    (init,) = [v for v in services["db"]["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    source, target, mode = init.split(":")
    assert os.access(ROOT / source, os.X_OK)  # the image runs an executable .sh, sources others
    assert target.endswith(".sh")
    assert mode == "ro"
    # Healthy only once the real server listens on TCP: the image's set-up server (while the
    # script runs) listens on its socket only, so migrate never starts before the roles exist.
    assert "-h 127.0.0.1" in " ".join(services["db"]["healthcheck"]["test"])


def test_media_is_in_the_object_store_not_a_shared_volume(compose: dict[str, Any]) -> None:
    """Web and workers share no disk: files are objects in the s3 service's bucket, whose data
    lives on a named volume of its own."""
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert not service.get("volumes"), f"{name} mounts {service.get('volumes')}: use the bucket"
        assert "MEDIA_ROOT" not in service["environment"]
        assert service["environment"]["S3_ENDPOINT_URL"] == "http://s3:9000"
        assert service["depends_on"]["s3"]["condition"] == "service_healthy"
    s3 = compose["services"]["s3"]
    (volume,) = s3["volumes"]
    assert volume.split(":")[0] in compose["volumes"]  # a named volume, not a host path
    assert volume.split(":")[1] == command(s3)[command(s3).index("server") + 1]
    # The S3 server's keys are the ones the app uses.
    env = compose["services"]["web"]["environment"]
    assert s3["environment"]["MINIO_ROOT_USER"] == env["AWS_ACCESS_KEY_ID"]
    assert s3["environment"]["MINIO_ROOT_PASSWORD"] == env["AWS_SECRET_ACCESS_KEY"]
    assert "media" not in compose["volumes"]


def test_migrate_creates_the_bucket_first(compose: dict[str, Any]) -> None:
    script = " ".join(command(compose["services"]["migrate"]))
    assert script.index("ensure_bucket") < script.index("migrate --noinput")


@pytest.fixture(scope="module")
def workers_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.workers.yml").read_text())


def test_workers_only_file_needs_nothing_from_the_web_host(
    workers_compose: dict[str, Any], settings_env_names: set[str]
) -> None:
    services = workers_compose["services"]
    assert set(services) == {"worker-gpu", "worker-cpu"}
    raw = (ROOT / "docker-compose.workers.yml").read_text()
    for name, service in services.items():
        env = service["environment"]
        assert set(env) <= settings_env_names, f"{name}: {sorted(set(env) - settings_env_names)}"
        assert set(REQUIRED_ENV) - {"DJANGO_ALLOWED_HOSTS"} <= set(env), name
        assert not service.get("volumes"), name
        assert not service.get("depends_on"), name
        cmd = command(service)
        assert cmd[cmd.index("-Q") + 1] == INFERENCE_QUEUE
        assert cmd[cmd.index("--concurrency") + 1] == "1"
    # Remote workers connect as the runtime role, like the main stack's (docs/database-roles.md).
    example = dict(line.split("=", 1) for line in (ROOT / "deploy" / "workers.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))  # fmt: skip
    main_db = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["db"]["environment"]
    assert example["DATABASE_URL"].startswith(f"postgres://{main_db['CLINIC_DB_APP']}:")
    # Remote services must be given: no default that silently points at localhost.
    for variable in ("DATABASE_URL", "REDIS_HOST", "REDIS_PASSWORD", "S3_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY"):
        assert f"${{{variable}:?" in raw, variable
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


@pytest.mark.parametrize("name", WORKERS)
def test_workers_consume_the_inference_queue(compose: dict[str, Any], name: str) -> None:
    cmd = command(compose["services"][name])
    assert cmd[:4] == ["celery", "-A", "clinic_platform", "worker"]
    queues = cmd[cmd.index("-Q") + 1].split(",")
    assert queues == [INFERENCE_QUEUE]
    assert settings.CELERY_TASK_DEFAULT_QUEUE == INFERENCE_QUEUE  # the sweep lands there too
    # One model process per container; prefetch 1 comes from the settings.
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1


def test_gpu_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "and-cuda" in gpu["build"]["args"]["TENSORFLOW"]
    assert "profiles" not in gpu  # on by default


def test_cpu_worker_is_behind_a_profile(compose: dict[str, Any]) -> None:
    cpu = compose["services"]["worker-cpu"]
    assert cpu.get("profiles") == ["cpu"]
    assert "deploy" not in cpu


def test_redis_persists_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = command(redis)
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])  # the AOF outlives the container


def test_health_checks(compose: dict[str, Any]) -> None:
    for name in ("db", "redis", "s3", "web", *WORKERS, "beat"):
        assert "test" in compose["services"][name].get("healthcheck", {}), f"{name} has no health check"
    web_check = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    assert reverse("healthz") in web_check


def test_app_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["db"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["s3"]["condition"] == "service_healthy"


def test_web_runs_the_wsgi_app_under_gunicorn(compose: dict[str, Any]) -> None:
    cmd = command(compose["services"]["web"])
    assert cmd[0] == "gunicorn"
    assert cmd[1].replace(":", ".") == settings.WSGI_APPLICATION


def test_dockerfile_tensorflow_pin_matches_requirements() -> None:
    requirements = (ROOT / "requirements" / "base.txt").read_text()
    pin = re.search(r"^tensorflow-cpu==([\w.]+)", requirements, re.M)
    assert pin, "requirements/base.txt no longer pins tensorflow-cpu"
    version = pin.group(1)
    assert f'ARG TENSORFLOW="tensorflow-cpu=={version}"' in (ROOT / "Dockerfile").read_text()
    compose_text = (ROOT / "docker-compose.yml").read_text()
    assert f"tensorflow[and-cuda]=={version}" in compose_text


def test_ci_script_is_executable_strict_and_runs_the_readme_command() -> None:
    # Since `make test` sets up packages and services itself, CI is a thin wrapper over it: the
    # packages and the S3 pass moved out of .ci/run (tests/ops/test_make_test.py checks them).
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -Eeuo pipefail" in text
    assert re.search(r"^make test$", text, re.M)
    system = (ROOT / "requirements" / "system.txt").read_text()
    for package in ("redis-server", "postgresql", "chromium"):
        assert re.search(rf"^{package}\b", system, re.M), package
    # The e2e suite runs a second time against a real S3 server, inside `make test`.
    runner = (ROOT / "scripts" / "run_suite.py").read_text()
    assert '"E2E_STORAGE": "s3"' in runner
    assert "seaweedfs_server(" in runner
    assert "test-e2e-s3:" in (ROOT / "Makefile").read_text()


# Hardened deploy: TLS proxy, secrets, Redis password, image contents -------------------------
SECRETS = (
    "DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "POSTGRES_OWNER_PASSWORD", "POSTGRES_APP_PASSWORD",
    "REDIS_PASSWORD", "S3_SECRET_KEY", "CLINIC_HOSTNAME", "TLS_CERT_DIR",
)  # fmt: skip


def test_required_secrets_have_no_defaults() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, f"{name} is not used"
        assert all(use.startswith(":?") for use in uses), f"{name} must be required (${{{name}:?...}}): {uses}"
    # No default password or secret key anywhere (the S3 access key id is a user name, not a secret).
    assert not re.findall(r"\$\{\w*(?:PASSWORD|SECRET)\w*:-", text)


def test_only_the_proxy_publishes_ports(compose: dict[str, Any]) -> None:
    publishing = {name for name, service in compose["services"].items() if service.get("ports")}
    # The DICOM receiver takes associations from the imaging network on its own port (issue 18).
    assert publishing == {"proxy", "dicom-receiver"}
    assert [p.split(":")[-1] for p in compose["services"]["dicom-receiver"]["ports"]] == ["11112"]
    assert sorted(p.split(":")[-1] for p in compose["services"]["proxy"]["ports"]) == ["443", "80"]
    assert compose["services"]["web"]["expose"] == ["8000"]
    assert compose["services"]["web"]["environment"]["DJANGO_BEHIND_TLS_PROXY"] == "1"
    assert compose["services"]["web"]["environment"]["TRUSTED_PROXY_COUNT"] == "1"  # nginx sets X-Forwarded-For


def test_proxy_terminates_tls_caps_and_buffers_bodies(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    template = next(v for v in proxy["volumes"] if "/etc/nginx/templates/" in v).split(":")[0]
    conf = (ROOT / template).read_text()
    # Anonymous-sized bodies everywhere; the upload URLs take the full cap after auth_request
    # (tests/ops/test_nginx_proxy.py runs it).
    size = re.search(r"^client_max_body_size (\d+)m;", conf, re.M)
    assert size, "no client_max_body_size"
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= int(size.group(1)) * 2**20 <= 4 * 2**20
    uploads = re.search(r"location ~ \^/\(api/cases.*?\{\s*client_max_body_size (\d+)m;\s*auth_request ", conf, re.S)
    assert uploads, "the upload location must cap and check the client first"
    assert int(uploads.group(1)) * 2**20 == settings.UPLOAD_MAX_REQUEST_BYTES  # the proxy and Django agree
    for line in ("proxy_request_buffering on;", "proxy_buffering on;", "listen 443 ssl", "ssl_certificate ",
                 "proxy_set_header X-Forwarded-Proto https;", "proxy_set_header X-Forwarded-For $remote_addr;",
                 "return 301 https://$host$request_uri;", "proxy_pass http://clinic_web;", "server web:8000;"):
        assert line in conf, line
    assert re.search(r"location = /metrics \{\s*return 404;", conf), "/metrics must not be public"
    assert "TLSv1 " not in conf
    assert "TLSv1.1" not in conf
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    assert "test" in proxy["healthcheck"]


def test_proxy_access_log_carries_no_query_string(compose: dict[str, Any]) -> None:
    """Patient-name searches travel in query strings: the proxy logs the path ($uri), never the
    request line, the full URI, the query or the Referer, in every server block (a server
    without its own access_log would inherit the image's `main` format, request line included).
    tests/ops/test_nginx_proxy.py reads the log of a real nginx."""
    proxy = compose["services"]["proxy"]
    template = next(v for v in proxy["volumes"] if "/etc/nginx/templates/" in v).split(":")[0]
    conf = (ROOT / template).read_text()
    formats = dict(re.findall(r"^log_format (\w+) ((?:'[^']*'\s*)+);", conf, re.M))
    assert formats, "no log_format"
    for name, layout in formats.items():
        assert "$uri " in layout, name
        assert not re.search(r"\$(request\b|request_uri|args|query_string|arg_|http_referer)", layout), layout
    servers = conf.split("\nserver {")[1:]
    assert len(servers) == 2
    for server in servers:
        (log,) = re.findall(r"^    access_log (\S+) (\w+);", server, re.M)
        assert log[1] in formats, log


def test_redis_requires_a_password(compose: dict[str, Any], workers_compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = command(redis)
    assert cmd[cmd.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    check = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in check
    assert "redis-cli ping" in check
    # Every app container, the remote workers' file included, signs in to Redis with it.
    for name, service in [*compose["services"].items(), *workers_compose["services"].items()]:
        url = service.get("environment", {}).get("REDIS_URL")
        if url is not None:
            assert url.startswith("redis://:${REDIS_PASSWORD:?"), f"{name}: {url}"


def test_dockerignore_keeps_secrets_and_tests_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".env.*", "tests", "bench", ".git", ".venv"} <= ignored


TEST_TOOLS = ("pytest", "pytest-django", "playwright", "schemathesis", "hypothesis", "ruff", "psutil")


def _packages(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower())
    return names


def test_image_installs_production_requirements_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/base.txt" in dockerfile
    assert "pip install -r requirements.txt" not in dockerfile
    base = _packages(ROOT / "requirements" / "base.txt")
    appended = _packages(ROOT / "requirements.txt")  # the image installs these lines too
    assert not (base | appended) & set(TEST_TOOLS), "test tools would reach the production image"
    # What make installs is everything: dev -> test -> base.
    assert "-r requirements/dev.txt" in (ROOT / "requirements.txt").read_text()
    assert "-r test.txt" in (ROOT / "requirements" / "dev.txt").read_text()
    assert "-r base.txt" in (ROOT / "requirements" / "test.txt").read_text()
    assert set(TEST_TOOLS) - {"hypothesis"} <= _packages(ROOT / "requirements" / "test.txt") | _packages(
        ROOT / "requirements" / "dev.txt"
    )

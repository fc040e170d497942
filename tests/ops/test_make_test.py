"""`make test` sets itself up: the one list of system packages (requirements/system.txt) and the
script that checks and installs it, read by the Makefile, .ci/run and the Dockerfile; the
throwaway PostgreSQL cluster the run starts (tests/testkit/processes.py postgres_server)."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from scripts import system_packages
from scripts.run_suite import Report, shown
from tests.testkit.processes import postgres_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system_packages.py"
NOT_A_PACKAGE = "clinic-no-such-package-x1"
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="Debian's dpkg-query is not here")


@pytest.fixture
def package_list() -> Iterator[Path]:
    """A list with one installed package (dpkg itself) and one no machine has, readable by any
    user (the non-root check reads it as `nobody`)."""
    fd, name = tempfile.mkstemp(suffix=".txt")
    path = Path(name)
    os.close(fd)
    path.write_text(f"# a comment line\ndpkg  # test: always there on Debian\n{NOT_A_PACKAGE}  # what needs it\n")
    path.chmod(0o644)
    yield path
    path.unlink()


def test_the_list_marks_what_stays_out_of_the_image() -> None:
    packages = {p.name: p for p in system_packages.read_list()}
    for name in ("redis-server", "postgresql", "chromium", "poppler-utils", "make", "python3-venv"):
        assert packages[name].test_only, name
    for name in ("libglib2.0-0", "libpango-1.0-0", "libharfbuzz-subset0", "fonts-dejavu-core"):
        assert not packages[name].test_only, name
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "list", "--image"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [name for name, p in packages.items() if not p.test_only]


def test_the_test_only_marker(tmp_path: Path) -> None:
    listed = tmp_path / "system.txt"
    listed.write_text("orthanc  # Tests: a real PACS\ndcmtk   # test:storescu\ntesseract-ocr  # OCR, tested too\n")
    assert [(p.name, p.test_only, p.why) for p in system_packages.read_list(listed)] == [
        ("orthanc", True, "a real PACS"),
        ("dcmtk", True, "storescu"),
        ("tesseract-ocr", False, "OCR, tested too"),
    ]


def test_two_words_on_a_line_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "system.txt"
    bad.write_text("redis-server postgresql\n")
    with pytest.raises(ValueError, match="one package per line"):
        system_packages.read_list(bad)


def test_makefile_ci_and_dockerfile_read_the_one_list() -> None:
    makefile = (ROOT / "Makefile").read_text()
    setup = makefile[makefile.index("test-setup:") :]
    # System packages before .venv: a user who cannot install them gets the message before
    # anything else has run.
    assert setup.index("scripts/system_packages.py ensure") < setup.index("$(STAMP)")
    assert re.search(r"^test: test-setup$", makefile, re.M)
    # requirements/system.txt is no pip requirements file: changing it reinstalls nothing.
    assert "$(filter-out $(SYSTEM_PACKAGES)" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements/system.txt" in dockerfile
    assert "$(python scripts/system_packages.py list --image)" in dockerfile
    ci = (ROOT / ".ci" / "run").read_text()
    for package in system_packages.read_list():
        if package.name not in ("make",):  # the bootstrap: make test cannot start without make
            assert not re.search(rf"install\b.*\s{re.escape(package.name)}\b", ci), package.name
    for doc in ("README.md", "docs/operations.md"):
        assert "requirements/system.txt" in (ROOT / doc).read_text(), doc


@needs_dpkg
def test_dpkg_tells_what_is_missing() -> None:
    assert system_packages.missing(["dpkg", NOT_A_PACKAGE, "coreutils"]) == [NOT_A_PACKAGE]


@needs_dpkg
def test_a_user_who_cannot_install_gets_the_exact_apt_command_and_exit_2(package_list: Path) -> None:
    # Run as `nobody` when we are root (with Debian's python3: ours may sit in root's home), the
    # user apt-get would refuse.
    as_root = os.geteuid() == 0
    python = "/usr/bin/python3" if as_root else sys.executable
    command = [python, str(SCRIPT), "ensure", "--file", str(package_list)]
    as_user = {"user": "nobody", "cwd": "/"} if as_root else {}
    result = subprocess.run(command, capture_output=True, text=True, check=False, **as_user)
    assert result.returncode == system_packages.MISSING, result.stderr
    expected = f"sudo apt-get update && sudo apt-get install -y -q --no-install-recommends {NOT_A_PACKAGE}\n"
    assert expected in result.stderr
    assert "installing" not in result.stdout + result.stderr


@needs_dpkg
@pytest.mark.skipif(os.geteuid() != 0, reason="only root gets the apt-get commands run")
def test_root_gets_the_missing_packages_installed_dry_run(package_list: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "ensure", "--dry-run", "--file", str(package_list)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "would run: apt-get update -q\n" in result.stdout
    assert f"would run: apt-get install -y -q --no-install-recommends {NOT_A_PACKAGE}\n" in result.stdout


@needs_dpkg
def test_all_present_is_one_line(tmp_path: Path) -> None:
    present = tmp_path / "system.txt"
    present.write_text("dpkg\ncoreutils  # test: ls\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "ensure", "--file", str(present)], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("== system packages: all 2 of system.txt present (")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_server_is_a_throwaway_cluster_of_its_own() -> None:
    with postgres_server("clinic_probe") as url:
        parts = urlsplit(url)
        with psycopg.connect(url, autocommit=True) as conn:
            name, user = conn.execute("SELECT current_database(), current_user").fetchone()
            assert (name, user) == ("clinic_probe", "clinic")
            # What pytest-django does: create and drop the test database.
            conn.execute("CREATE DATABASE test_clinic_probe")
            conn.execute("DROP DATABASE test_clinic_probe")
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        assert data_dir.is_dir()
        if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster belongs to another user
            assert data_dir.stat().st_uid != 0
    assert not _accepts(parts.port), "the server is still listening"
    assert not data_dir.parent.exists(), "the cluster's folder was left behind"


def test_the_run_report_hides_passwords_and_times_each_part() -> None:
    assert shown("postgres://clinic:s3cret@db:5432/clinic") == "postgres://clinic:***@db:5432/clinic"
    assert shown("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    report = Report()
    with report.part("redis") as note:
        note.append("redis-server at redis://127.0.0.1:1/0")
    with report.part("tests", "passed"):
        pass
    lines = report.table().splitlines()
    assert [line.split()[0] for line in lines] == ["redis", "tests"]
    assert lines[0].endswith("s  redis-server at redis://127.0.0.1:1/0")

"""The DICOM receiver (issue 18) is started everywhere the platform runs: `make run`
(scripts/devserver.py), docker-compose.yml and deploy/k8s; and the Debian packages its tests
need are listed for CI (requirements/system.txt, .ci/run)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_devserver_starts_the_receiver() -> None:
    spec = importlib.util.spec_from_file_location("devserver", ROOT / "scripts" / "devserver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cmd = module.commands("8000")["dicom"]
    assert cmd[1:3] == ["manage.py", "dicom_receiver"]


def test_compose_runs_the_receiver_on_the_dicom_port_and_offers_orthanc() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    receiver = compose["services"]["dicom-receiver"]
    assert receiver["command"] == ["python", "manage.py", "dicom_receiver"]
    assert receiver["ports"] == ["${DICOM_PORT:-11112}:11112"]
    assert receiver["environment"] == compose["services"]["web"]["environment"]  # same database and media
    orthanc = compose["services"]["orthanc"]
    assert orthanc["profiles"] == ["pacs"]
    dockerfile = (ROOT / orthanc["build"]["context"] / "Dockerfile").read_text()
    assert "orthanc orthanc-dicomweb" in dockerfile


def test_k8s_deploys_the_receiver_with_a_service() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/dicom-receiver.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "manage.py", "dicom_receiver"]
    assert container["ports"][0]["containerPort"] == settings.DICOM_PORT == 11112
    assert container["readinessProbe"]["tcpSocket"]["port"] == "dicom"
    assert kinds["Service"]["spec"]["ports"][0]["port"] == 11112
    assert "dicom-receiver.yaml" in (ROOT / "deploy/k8s/kustomization.yaml").read_text()


def test_system_packages_are_listed_and_installed_by_ci() -> None:
    listed = [
        line.split("#")[0].strip() for line in (ROOT / "requirements/system.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]  # fmt: skip
    # make test (and so .ci/run, its thin wrapper) installs what this list names (tests/ops/test_make_test.py)
    assert {"orthanc", "orthanc-dicomweb", "dcmtk", "dicom3tools"} <= set(listed)

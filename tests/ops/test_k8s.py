"""deploy/k8s (kustomize) checked with no cluster: every built-in resource validated against the
Kubernetes OpenAPI schemas that kubernetes-validate ships (offline; the test blocks the network
to prove it), KEDA's resources checked field by field (their CRD schema is not shipped), and the
manifests checked against the settings and the queue policy like the compose file."""
from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from workers.celery_policy import INFERENCE_QUEUE, MAINTENANCE_QUEUE

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), f"kustomization.yaml lists a missing file: {name}"
        docs.extend(_documents(K8S / name))
    unlisted = {p.name for p in K8S.glob("*.yaml")} - set(kustomization["resources"])
    assert unlisted <= {"kustomization.yaml", "secret.example.yaml"}, unlisted
    return docs


def _by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources if doc["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted during offline schema validation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_builtin_resource_validates_against_the_schemas_offline(resources, no_network) -> None:
    checked = 0
    for doc in [*resources, *_documents(K8S / "secret.example.yaml")]:
        if doc["kind"] in KEDA_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 10


def test_a_broken_manifest_is_rejected(resources, no_network) -> None:
    """The validation above can fail: a misspelt field and a wrong type are caught."""
    web = _by_kind(resources, "Deployment")["clinic-web"]
    typo = yaml.safe_load(yaml.safe_dump(web))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = typo["spec"]["template"]["spec"][
        "containers"
    ][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    wrong_type = yaml.safe_load(yaml.safe_dump(web))
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)


def test_web_has_probes_on_healthz_and_a_service(resources) -> None:
    web = _container(_by_kind(resources, "Deployment")["clinic-web"])
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = _by_kind(resources, "Service")["clinic-web"]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "clinic-web"}


@pytest.mark.parametrize(("name", "queue"), [
    ("clinic-worker-gpu", INFERENCE_QUEUE), ("clinic-worker-cpu", INFERENCE_QUEUE),
    ("clinic-worker-maintenance", MAINTENANCE_QUEUE),
])  # fmt: skip
def test_workers_consume_their_queue_one_scan_at_a_time_with_probes(resources, name: str, queue: str) -> None:
    container = _container(_by_kind(resources, "Deployment")[name])
    cmd = container["command"]
    assert cmd[:4] == ["celery", "-A", "clinic_platform", "worker"]
    assert cmd[cmd.index("-Q") + 1] == queue
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert "readinessProbe" in container
    assert "inspect ping" in " ".join(container["livenessProbe"]["exec"]["command"])


def test_gpu_workers_ask_for_a_gpu_on_gpu_nodes(resources) -> None:
    deployment = _by_kind(resources, "Deployment")["clinic-worker-gpu"]
    pod = deployment["spec"]["template"]["spec"]
    resources_ = _container(deployment)["resources"]
    assert resources_["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert _container(deployment)["image"] == "clinic-platform-gpu"
    cpu = _container(_by_kind(resources, "Deployment")["clinic-worker-cpu"])
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})


def test_one_beat_never_two(resources) -> None:
    beat = _by_kind(resources, "Deployment")["clinic-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_keda_scales_model_workers_on_the_inference_list(resources) -> None:
    deployments = _by_kind(resources, "Deployment")
    scaled = _by_kind(resources, "ScaledObject")
    auth = _by_kind(resources, "TriggerAuthentication")
    assert set(scaled) == {"clinic-worker-gpu", "clinic-worker-cpu"}
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        assert 0 <= obj["spec"]["minReplicaCount"] < obj["spec"]["maxReplicaCount"]
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == INFERENCE_QUEUE
        assert int(trigger["metadata"]["listLength"]) > 0
        assert trigger["authenticationRef"]["name"] in auth, name
    assert scaled["clinic-worker-gpu"]["spec"]["minReplicaCount"] >= 1  # a warm model at all times


def test_configuration_names_only_variables_the_settings_read(resources, settings_env_names) -> None:
    config = _by_kind(resources, "ConfigMap")["clinic-config"]["data"]
    secrets = {d["metadata"]["name"]: d["stringData"] for d in _documents(K8S / "secret.example.yaml")}
    (job,) = _by_kind(resources, "Job").values()
    job_env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    names = set(config) | set(secrets["clinic-secrets"]) | set(secrets["clinic-db-owner"]) | job_env
    assert names <= settings_env_names, sorted(names - settings_env_names)
    for required in ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "S3_BUCKET", "AWS_SECRET_ACCESS_KEY"):
        assert required in names
    for deployment in _by_kind(resources, "Deployment").values():
        refs = {next(iter(ref.values()))["name"] for ref in _container(deployment)["envFrom"]}
        assert refs == {"clinic-config", "clinic-secrets"}, deployment["metadata"]["name"]


def test_the_ingress_terminates_tls_for_the_allowed_host_and_routes_to_web(resources) -> None:
    ingresses = _by_kind(resources, "Ingress")
    web = ingresses["clinic-web"]
    config = _by_kind(resources, "ConfigMap")["clinic-config"]["data"]
    host = config["DJANGO_ALLOWED_HOSTS"]
    assert web["spec"]["ingressClassName"] == "nginx"
    assert web["spec"]["tls"] == [{"hosts": [host], "secretName": "clinic-tls"}]
    (rule,) = web["spec"]["rules"]
    assert rule["host"] == host
    (path,) = rule["http"]["paths"]
    service = _by_kind(resources, "Service")["clinic-web"]
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = web["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    from django.conf import settings
    from django.urls import reverse

    body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= int(body.removesuffix("m")) * 2**20 <= 4 * 2**20
    # Large bodies: the upload URLs only, after Django said the client is signed in (like deploy/nginx).
    uploads = ingresses["clinic-web-uploads"]
    upload_annotations = uploads["metadata"]["annotations"]
    upload_body = upload_annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(upload_body.removesuffix("m")) * 2**20 == settings.UPLOAD_MAX_REQUEST_BYTES  # ingress and Django agree
    auth = urlsplit(upload_annotations["nginx.ingress.kubernetes.io/auth-url"])
    assert auth.path == reverse("upload_allowed")
    assert auth.hostname.split(".")[0] == service["metadata"]["name"]
    assert upload_annotations["nginx.ingress.kubernetes.io/auth-method"] == "GET"
    (upload_rule,) = uploads["spec"]["rules"]
    assert upload_rule["host"] == host
    patterns = [p["path"] for p in upload_rule["http"]["paths"]]
    for url, allowed in (("/api/cases/12/scans/", True), ("/cases/12/scans/", True), ("/cases/new/", True),
                         ("/dicomweb/studies", True),
                         ("/login/", False), ("/api/auth/token/", False), ("/api/cases/12/", False)):  # fmt: skip
        assert any(re.match(pattern, url) for pattern in patterns) == allowed, url
    assert f"https://{host}" in config["DJANGO_CSRF_TRUSTED_ORIGINS"]
    closed = ingresses["clinic-web-metrics-closed"]
    assert [p["path"] for p in closed["spec"]["rules"][0]["http"]["paths"]] == ["/metrics"]
    assert closed["metadata"]["annotations"]["nginx.ingress.kubernetes.io/whitelist-source-range"] == "127.0.0.1/32"


def test_behind_the_ingress_the_settings_trust_exactly_one_proxy(resources) -> None:
    """ingress-nginx replaces X-Forwarded-For with the address it saw and sets X-Forwarded-Proto:
    the ConfigMap trusts one proxy and the TLS header, and a NetworkPolicy lets only the
    controller's namespace (and the scraper's) reach the web pods, so nothing else can send them."""
    config = _by_kind(resources, "ConfigMap")["clinic-config"]["data"]
    assert config["TRUSTED_PROXY_COUNT"] == "1"
    assert config["DJANGO_BEHIND_TLS_PROXY"] == "true"
    (policy,) = _by_kind(resources, "NetworkPolicy").values()
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "clinic-web"}
    (rule,) = policy["spec"]["ingress"]
    namespaces = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]}
    assert namespaces == {"ingress-nginx", "monitoring"}


def test_the_configmaps_proxy_settings_give_lockout_and_audit_the_client_address(resources, tmp_path) -> None:
    """The production settings run with the ConfigMap's values, fed what the ingress sends (its
    own pod address as the peer, the client's in X-Forwarded-For, https in X-Forwarded-Proto):
    the client address and a secure request come out, for the lockout, the throttle and the audit."""
    import subprocess
    import sys

    from tests.ops.test_deploy import ROOT, production_env

    config = _by_kind(resources, "ConfigMap")["clinic-config"]["data"]
    env = production_env(tmp_path, **{k: config[k] for k in ("TRUSTED_PROXY_COUNT", "DJANGO_BEHIND_TLS_PROXY")})
    env["DJANGO_SETTINGS_MODULE"] = "clinic_platform.settings"
    probe = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.test import RequestFactory\n"
        "from clinic_platform.client_ip import client_ip\n"
        "from clinic_platform.api import ClientScopedRateThrottle\n"
        "r = RequestFactory().get('/', REMOTE_ADDR='10.42.0.17', HTTP_X_FORWARDED_FOR='203.0.113.9',"
        " HTTP_X_FORWARDED_PROTO='https', SERVER_NAME='clinic.example.org')\n"
        "print(client_ip(r), ClientScopedRateThrottle().get_ident(r), r.is_secure(),"
        " settings.AXES_CLIENT_IP_CALLABLE)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    ip, throttle_ip, secure, axes_callable = result.stdout.split()
    assert (ip, throttle_ip, secure) == ("203.0.113.9", "203.0.113.9", "True")
    assert axes_callable.endswith("client_ip")  # the lockout asks the same rule


def test_only_the_migrate_job_connects_as_the_database_owner(resources) -> None:
    """docs/database-roles.md: the Job migrates as the owner (its own Secret, which nothing else
    reads) and names the runtime role to grant; web, workers and beat get clinic-secrets'
    DATABASE_URL, the runtime role's, which cannot change the audit trail."""
    secrets = {d["metadata"]["name"]: d["stringData"] for d in _documents(K8S / "secret.example.yaml")}
    runtime = urlsplit(secrets["clinic-secrets"]["DATABASE_URL"])
    owner = urlsplit(secrets["clinic-db-owner"]["DATABASE_URL"])
    assert set(secrets["clinic-db-owner"]) == {"DATABASE_URL"}
    assert runtime.username != owner.username
    assert (runtime.hostname, runtime.port, runtime.path) == (owner.hostname, owner.port, owner.path)  # one database
    (job,) = _by_kind(resources, "Job").values()
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    assert "migrate --noinput" in " ".join(migrate["command"])
    env = {e["name"]: e for e in migrate["env"]}  # `env` wins over the Secret's DATABASE_URL in envFrom
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "clinic-db-owner", "key": "DATABASE_URL"}
    assert env["DATABASE_RUNTIME_ROLE"]["value"] == runtime.username
    config = _by_kind(resources, "ConfigMap")["clinic-config"]["data"]
    assert not {"DATABASE_URL", "DATABASE_RUNTIME_ROLE"} & set(config)
    deployments = _by_kind(resources, "Deployment")
    assert {"clinic-web", "clinic-worker-gpu", "clinic-worker-cpu", "clinic-worker-maintenance", "clinic-beat"} <= set(
        deployments
    )
    for name, deployment in deployments.items():
        assert "clinic-db-owner" not in yaml.safe_dump(deployment), name
        container = _container(deployment)
        assert not {"DATABASE_URL", "DATABASE_RUNTIME_ROLE"} & {e["name"] for e in container.get("env", [])}, name
        assert {"secretRef": {"name": "clinic-secrets"}} in container["envFrom"], name

"""The API against its own OpenAPI schema, over real HTTP (schemathesis, property-based): for
every operation, generated requests, signed in with a real token, get no 5xx, a documented
status and a body matching the schema, and every error is in the one shape
{"error": {"code", "message", "fields"}} (clinic_platform/errors.py). The number of examples
per operation is bounded (SCHEMATHESIS_EXAMPLES, default 12) to keep the suite quick."""
from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.testkit.data import api_token as new_api_token
from tests.testkit.data import make_world

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))
# What the contract promises. Not schemathesis' positive_data_acceptance: a schema-valid
# request can still be refused by a business rule (wrong password, another clinic's patient),
# with a documented 400 in the error shape.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_token(live_server, transactional_db, django_capture_on_commit_callbacks) -> str:
    """A clinic with data (patient, case, a finished scan) and its staff member's token."""
    world = make_world("contract", django_capture_on_commit_callbacks)
    return new_api_token(world.staff)


def assert_error_shape(response) -> None:
    content_type = {k.lower(): v for k, v in response.headers.items()}["content-type"]
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), content_type
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, body
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["code"]
    assert error["message"]
    assert isinstance(error["fields"], dict)
    assert all(isinstance(m, list) and all(isinstance(s, str) for s in m) for m in error["fields"].values())


def test_api_matches_its_schema_and_errors_share_one_shape(live_server, api_token) -> None:
    auth = {"Authorization": f"Token {api_token}"}
    served = requests.get(f"{live_server.url}/api/schema/", headers={**auth, "Accept": "application/json"}, timeout=30)
    assert served.status_code == 200, served.text
    schema = schemathesis.openapi.from_dict(served.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    seen: dict[str, set[int]] = {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case) -> None:
            response = case.call(base_url=live_server.url, headers=auth)
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
            case.validate_response(response, checks=CHECKS)
            if response.status_code >= 400:
                assert_error_shape(response)
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        check()
    assert set(seen) == {op.label for op in operations}
    # The generated requests did reach the handlers, not only the error paths.
    assert any(code < 300 for codes in seen.values() for code in codes), seen


def test_errors_outside_the_operations_share_the_shape(live_server, api_token) -> None:
    """URLs that match no route, a wrong method, a bad token: the same shape."""
    auth = {"Authorization": f"Token {api_token}"}
    checks = [
        (requests.get(f"{live_server.url}/api/no-such-thing/", headers=auth, timeout=10), 404),
        (requests.delete(f"{live_server.url}/api/patients/", headers=auth, timeout=10), 405),
        (requests.get(f"{live_server.url}/api/patients/", headers={"Authorization": "Token nope"}, timeout=10), 401),
        (requests.get(f"{live_server.url}/api/patients/", timeout=10), 401),
        (requests.get(f"{live_server.url}/api/patients/999999/", headers=auth, timeout=10), 404),
    ]
    for response, expected in checks:
        assert response.status_code == expected, (response.url, response.status_code, response.text[:200])
        assert_error_shape(response)

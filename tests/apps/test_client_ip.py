"""One rule for the client address (lockouts, the API throttle, the audit trail)."""

import pytest
from django.test import RequestFactory

from clinic_platform.api import ClientScopedRateThrottle
from clinic_platform.client_ip import client_ip


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, None, "10.0.0.1"),
        (0, "6.6.6.6", "10.0.0.1"),  # no proxy of ours: the header is the client's word
        (1, None, "10.0.0.1"),
        (1, "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # what our one proxy saw
        (2, "6.6.6.6, 198.51.100.7, 172.16.0.2", "198.51.100.7"),
        (2, "198.51.100.7", "198.51.100.7"),
        (1, "not-an-address", "10.0.0.1"),
    ],
)
def test_client_ip(settings, trusted, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = trusted
    headers = {"REMOTE_ADDR": "10.0.0.1"}
    if forwarded:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    request = RequestFactory().get("/", **headers)
    assert client_ip(request) == expected
    assert ClientScopedRateThrottle().get_ident(request) == expected


def test_default_trusts_no_proxy(settings):
    assert settings.TRUSTED_PROXY_COUNT == 0
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0

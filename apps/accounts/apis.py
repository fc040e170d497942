"""API views for accounts: the token endpoint."""

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.throttling import ScopedRateThrottle


class TokenApi(ObtainAuthToken):
    """POST auth/token/ (username, password) → {"token": …}. Limited per client IP
    (REST_FRAMEWORK "auth-token" rate, API_TOKEN_THROTTLE_RATE): password guessing gets a 429."""

    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "auth-token"

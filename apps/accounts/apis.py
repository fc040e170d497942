"""API views for accounts: the token endpoint."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic_platform.api import ClientScopedRateThrottle, validated_input

from .services import login_is_locked_out, login_retry_after_seconds, token_create


class TokenApi(APIView):
    """POST auth/token/ (username, password) → {"token", "expiry"}.

    Tokens are django-rest-knox tokens: stored as a SHA-512 digest, expiring after
    API_TOKEN_TTL_HOURS, revoked when the user's password changes or the user is deactivated.
    Password guessing is stopped twice: django-axes locks the username and the client address
    after AXES_FAILURE_LIMIT failures, shared with /login/ and /admin/login/ (answered 429 with
    Retry-After), and the "auth-token" throttle limits tries per client address."""

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)

    class TokenOutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expiry = serializers.DateTimeField(allow_null=True)

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (ClientScopedRateThrottle,)
    throttle_scope = "auth-token"

    def _refuse_if_locked(self, request: Request) -> None:
        if login_is_locked_out(request=request._request):
            wait = login_retry_after_seconds(request=request._request)
            raise exceptions.Throttled(wait=wait, detail="Too many failed sign-ins. Try again later.")

    @extend_schema(request=TokenInputSerializer, responses={200: TokenOutputSerializer})
    def post(self, request: Request) -> Response:
        credentials = validated_input(self.TokenInputSerializer, request)
        # django.contrib.auth.authenticate runs the axes backend first: a locked-out username
        # or address is refused without checking the password, and a failure is counted.
        user = authenticate(request._request, username=credentials["username"], password=credentials["password"])
        self._refuse_if_locked(request)
        if user is None:
            raise exceptions.ValidationError({"non_field_errors": ["Unable to log in with provided credentials."]})
        token, expiry = token_create(user=user, request=request._request)
        return Response({"token": token, "expiry": expiry})

"""What stands between a password guesser and an account, and keeps sign-in working when the
shared cache does not:

- **Pair lockout** (django-axes, AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]): a
  (username, client address) pair is locked after AXES_FAILURE_LIMIT failures. Nobody can lock
  another person out from elsewhere, and a hospital NAT is not locked as a whole.
- **Per-address back-off** (`address_backoff_seconds`): an address whose passwords failed more
  than SIGNIN_ADDRESS_FREE_FAILURES times within AXES_COOLOFF_TIME waits 2, 4, 8 … seconds
  (up to AXES_COOLOFF_TIME) between tries, whichever usernames it tries. Counted from the
  audit trail's failed sign-ins (the database): no cache needed, the same in every process.
- **Cache down** (`ResilientCacheHandler`): the lockout counts live in the shared cache (Redis);
  when it does not answer, the counts go to the database (axes' database handler), the
  fallback is logged and counted in `clinic_signin_cache_fallback_total`, and sign-in works.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from axes.handlers.cache import AxesCacheHandler
from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from prometheus_client import Counter

logger = logging.getLogger(__name__)

CACHE_FALLBACKS = Counter(
    "clinic_signin_cache_fallback",
    "Sign-in protection steps that fell back from the shared cache to the database (cache down)",
    ["step"],
)
# Detail of a failed sign-in refused by the back-off (no password checked): not counted again.
BACKOFF_DETAIL = "refused: address backing off"


def is_cache_outage(exc: BaseException) -> bool:
    """The cache did not answer (Redis down, refused, timed out), as opposed to a bug."""
    from redis.exceptions import RedisError

    return isinstance(exc, (RedisError, ConnectionError, TimeoutError, OSError))


def cache_fallback(step: str, exc: BaseException) -> None:
    CACHE_FALLBACKS.labels(step=step).inc()
    logger.warning("sign-in %s: the cache did not answer (%s); using the database instead", step, exc)


class ResilientCacheHandler(AxesCacheHandler):
    """AxesCacheHandler that hands each step to AxesDatabaseHandler while the cache is down."""

    _database: AxesDatabaseHandler | None = None

    def _fallback(self, step: str, cached: Callable[[], Any], database: Callable[[AxesDatabaseHandler], Any]) -> Any:
        try:
            return cached()
        except Exception as exc:
            if not is_cache_outage(exc):
                raise
            cache_fallback(step, exc)
            if self._database is None:
                self._database = AxesDatabaseHandler()
            return database(self._database)

    def get_failures(self, request: Any, credentials: dict | None = None) -> int:
        return self._fallback(
            "lockout check",
            lambda: super(ResilientCacheHandler, self).get_failures(request, credentials),
            lambda db: db.get_failures(request, credentials),
        )

    def user_login_failed(self, sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
        return self._fallback(
            "failure count",
            lambda: super(ResilientCacheHandler, self).user_login_failed(sender, credentials, request, **kwargs),
            lambda db: db.user_login_failed(sender, credentials, request, **kwargs),
        )

    def user_logged_in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        return self._fallback(
            "success reset",
            lambda: super(ResilientCacheHandler, self).user_logged_in(sender, request, user, **kwargs),
            lambda db: db.user_logged_in(sender, request, user, **kwargs),
        )

    def user_logged_out(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        return self._fallback(
            "sign-out",
            lambda: super(ResilientCacheHandler, self).user_logged_out(sender, request, user, **kwargs),
            lambda db: db.user_logged_out(sender, request, user, **kwargs),
        )

    # The database fallback saves AccessAttempt rows; axes then notifies the configured handler.
    def post_save_access_attempt(self, instance: Any, **kwargs: Any) -> None:
        return None

    def post_delete_access_attempt(self, instance: Any, **kwargs: Any) -> None:
        return None

    def reset_attempts(self, **kwargs: Any) -> int:
        return self._fallback(
            "reset",
            lambda: super(ResilientCacheHandler, self).reset_attempts(**kwargs),
            lambda db: db.reset_attempts(**kwargs),
        )


def address_backoff_seconds(*, ip: str | None, now: datetime.datetime | None = None) -> int:
    """Seconds this address must still wait before its next sign-in try (0: go ahead)."""
    if not ip:
        return 0
    from apps.audit.models import AuditAction, AuditEvent

    now = now or timezone.now()
    window = settings.AXES_COOLOFF_TIME
    failures = (
        AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED, ip=ip, at__gte=now - window)
        .exclude(detail=BACKOFF_DETAIL)
        .values_list("at", flat=True)
    )
    over = failures.count() - settings.SIGNIN_ADDRESS_FREE_FAILURES
    if over <= 0:
        return 0
    delay = min(datetime.timedelta(seconds=2 ** min(over, 20)), window)
    wait = failures.order_by("-at").first() + delay - now
    return max(0, int(wait.total_seconds() + 0.999))


def refuse_if_address_backing_off(request: HttpRequest) -> bool:
    """Mark the request refused (answered 429 by axes' middleware) when its address backs off."""
    from clinic_platform.client_ip import client_ip

    wait = address_backoff_seconds(ip=client_ip(request))
    if wait:
        request.axes_locked_out = True
        request.signin_retry_after = wait
        request.signin_backoff = True
    return bool(wait)

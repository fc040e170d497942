"""Who the client is and how sign-in is protected: trusted proxies, the shared cache,
django-axes lockouts, django-rest-knox API tokens, the audit trail and case retention.

Docs: https://django-axes.readthedocs.io/en/latest/4_configuration.html,
https://jazzband.github.io/django-rest-knox/settings/
"""

from datetime import timedelta

from .env import env

# Proxies of ours in front of the web process that append to X-Forwarded-For. 0 (default): the
# header is ignored and REMOTE_ADDR is the client; a client-sent header must never pick the
# address a lockout or a throttle counts (clinic_platform/client_ip.py).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# One cache for every web process: lockout and throttle counts are shared, not per process.
_REDIS_URL = env.str("REDIS_URL", default="")
_CACHE_URL = env.str("CACHE_URL", default=_REDIS_URL)
if _CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _CACHE_URL,
            "KEY_PREFIX": "clinic",
            # A cache that hangs must fail fast: sign-in then falls back to the database.
            "OPTIONS": {
                "socket_connect_timeout": env.float("CACHE_TIMEOUT_SECONDS", default=1.0),
                "socket_timeout": env.float("CACHE_TIMEOUT_SECONDS", default=1.0),
            },
        }
    }

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked.
    "apps.accounts.backends.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
# Locked per (username, client address) pair: nobody can lock someone else out from another
# address, and a hospital NAT is not locked as a whole. One address walking through many
# accounts backs off instead (apps/accounts/signin_guard.py).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Failed sign-ins one address may make within AXES_COOLOFF_TIME before it waits 2, 4, 8 … s.
SIGNIN_ADDRESS_FREE_FAILURES = env.int("SIGNIN_ADDRESS_FREE_FAILURES", default=10)
AXES_CLIENT_IP_CALLABLE = "clinic_platform.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True
# Counts live in the shared cache (Redis) when there is one, else in the database: either way
# every web process sees the same counts. With the cache down they go to the database.
AXES_HANDLER = (
    "apps.accounts.signin_guard.ResilientCacheHandler" if _CACHE_URL else "axes.handlers.database.AxesDatabaseHandler"
)
AXES_DISABLE_ACCESS_LOG = True  # the audit trail records sign-ins (apps/audit)

# /metrics for a scraper outside the private network (clinic_platform/health.py): send
# "Authorization: Bearer <METRICS_TOKEN>". Unset: only direct private/loopback connections.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env.float("API_TOKEN_TTL_HOURS", default=10)),
    "AUTH_HEADER_PREFIX": "Token",  # the header clients already send: "Authorization: Token <key>"
    "AUTO_REFRESH": False,
}

# A deleted case (and its scans and files) is kept this long, restorable, then purged by the
# maintenance task `purge_deleted_cases` (beat every CASE_PURGE_INTERVAL_SECONDS).
CASE_RETENTION_DAYS = env.float("CASE_RETENTION_DAYS", default=30)
CASE_PURGE_INTERVAL_SECONDS = env.float("CASE_PURGE_INTERVAL_SECONDS", default=3600)

"""HTTPS, the TLS proxy in front, and the browser's security headers (CSP, HSTS).

Production (`DJANGO_SECURE`, on unless DEBUG) assumes TLS is terminated by the reverse proxy
of docker-compose.yml (Caddy), the only published port. `manage.py check --deploy
--fail-level WARNING` is clean with these defaults (tests/ops/test_deploy.py).
"""
from urllib.parse import urlsplit

from csp.constants import NONE, SELF

from .base import DEBUG
from .env import env
from .storage import MEDIA_PRESIGNED_REDIRECT, S3_BUCKET, S3_ENDPOINT_URL

_secure = env.bool("DJANGO_SECURE", default=not DEBUG)

# The proxy's X-Forwarded-Proto is believed only when the operator says the app is reachable
# through that proxy alone (compose: web publishes no port). Trusted otherwise, any client
# could claim "https" on a plain-HTTP connection.
BEHIND_TLS_PROXY = env.bool("DJANGO_BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if _secure:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    # Plain HTTP is redirected (by the proxy first; this catches anything that gets past it).
    # A plain-HTTP trial without the proxy sets DJANGO_SECURE_SSL_REDIRECT=false.
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # Health probes reach gunicorn over plain HTTP inside the network (clinic_platform/health.py
    # answers them first anyway).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)  # one year
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # Preloading is a registration with the browsers for the whole domain: the operator's
    # decision, not a default (security.W021 is silenced for that reason only).
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_COOKIE_HTTPONLY = True

# Content Security Policy (django-csp): only this site's own scripts, styles and images; no
# inline script or style, no eval, no framing. The pages have no inline scripts or style
# attributes (static/js/app.js does the rest), htmx is vendored and told not to inject styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],  # htmx polls the scan cards
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
# MEDIA_PRESIGNED_REDIRECT sends <img> requests on to the bucket (a presigned URL): the browser
# then loads pictures from the S3 endpoint's origin, which the policy must allow (that origin
# only; streaming, the default, needs nothing).
if MEDIA_PRESIGNED_REDIRECT and S3_ENDPOINT_URL and S3_BUCKET:
    _s3 = urlsplit(S3_ENDPOINT_URL)
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] = [SELF, f"{_s3.scheme}://{_s3.netloc}"]

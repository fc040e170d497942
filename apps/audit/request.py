"""The request being served, for audit events recorded deep in a service that has no request at
hand (uploads, reviews). Set by the audit middleware (apps/audit/context.py) for the length of
each request; a module of its own so the services read it without importing the middleware."""

from contextvars import ContextVar

from django.http import HttpRequest

REQUEST: ContextVar[HttpRequest | None] = ContextVar("audit_current_request", default=None)


def current_request() -> HttpRequest | None:
    return REQUEST.get()

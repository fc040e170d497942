"""gunicorn settings every command line picks up: gunicorn reads ./gunicorn.conf.py from its
working directory (/app in the image; the repository root for `make`, compose and the tests).
Flags given on a command line still win.

- Access log without query strings or referrers: a patient-name search (`?q=Surname`) must
  not land in the logs (the path is enough to count and debug requests).
- The errors gunicorn answers itself, before Django sees the request (414 URI too long, 431
  header fields too large, 400 malformed request), in the platform's one JSON error shape
  (clinic_platform/errors.py), without echoing the request line back.
"""

import json

from gunicorn import util

# %(U)s is the path without its query string; no %(f)s (the Referer carries queries too).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'

_CODES = {400: "invalid", 403: "permission_denied", 414: "too_large", 417: "invalid", 431: "too_large",
          500: "server_error", 501: "not_implemented"}  # fmt: skip
_MESSAGES = {
    414: "The address is too long.",
    431: "The request's headers are too large.",
    500: "Something went wrong on our side; the error has been logged.",
}


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    message = _MESSAGES.get(status_int, f"{reason}.")
    body = json.dumps(
        {"error": {"code": _CODES.get(status_int, "invalid"), "message": message, "fields": {}}}
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n\r\n"
    ).encode("latin1")
    util.write_nonblock(sock, head + body)


util.write_error = _write_json_error  # gunicorn.workers.base calls util.write_error

"""The OpenAPI schema's AutoSchema: every operation documents the errors it can answer, all in
the one shape of clinic_platform/errors.py (component `Error`)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse

from clinic_platform.errors import ErrorSerializer

_ERRORS = {
    "400": "Invalid input (`fields` names each problem) or a malformed request.",
    "401": "Not signed in, or the token is wrong or expired.",
    "403": "Signed in, but not allowed to do this.",
    "404": "No such object in your clinic (another clinic's objects look absent), or no such URL.",
    "405": "This method is not allowed on this URL.",
    "413": "The request body is over the upload limits (see docs/platform.md, 'Uploads and memory').",
    "415": "The request body's content type is not accepted here.",
    "429": "Too many requests; `Retry-After` says when to try again.",
    "500": "Something went wrong on our side; the error has been logged.",
}
_BODY_ONLY = {"400", "413", "415"}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        takes_body = self.method in ("POST", "PUT", "PATCH")
        for code, description in _ERRORS.items():
            if code in _BODY_ONLY and not takes_body:
                continue
            error = OpenApiResponse(ErrorSerializer, description=description)
            responses.setdefault(code, self._get_response_for_code(error, code, direction=direction))
        return responses

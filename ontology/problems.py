"""RFC 7807 problem details: every error the registry service returns has this one shape.

Why: a client registering a device must be able to tell "your TD is invalid,
here is the list" from "the query took too long" from "you need a token"
without scraping HTML or tracebacks. Each kind of problem has a stable
``type`` URI under :data:`PROBLEM_BASE`; validation problems carry the list
of readable messages in ``errors``.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://w3id.org/tinyfleet/problems/"


class Problem(Exception):
    """Raise from a route to answer with problem+json."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The JSON members of the problem document."""
        out: dict[str, Any] = {"type": PROBLEM_BASE + self.kind, "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        if self.errors:
            out["errors"] = self.errors
        return out

    def response(self, instance: str | None = None) -> JSONResponse:
        """The HTTP response for this problem."""
        return JSONResponse(self.body(instance), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)

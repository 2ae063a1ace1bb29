"""The console's one way to the registry: its HTTP API, in process or over the network.

Why HTTP even in process: a pyoxigraph store directory is locked by the
process that opened it, so a console inside ``tinyfleet server`` must use the
server's own store object, while a standalone console reads a running
``tinyfleet registry serve``. Serving the registry app itself
(:func:`ontology.service.create_app` over the shared store, read-only without
a token) and talking to it through httpx, by its ASGI transport in process or
by TCP to a URL, gives both cases one client, one set of rules (query limits,
problem+json, the token check on every write) and one ``/registry`` for the
browser: the same app mounted, or a proxy to the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

SPARQL_JSON = "application/sparql-results+json"
#: How many Things one ``/things`` page may hold (the service's MAX_PAGE), and how many pages the console reads.
PAGE, MAX_PAGES = 1000, 20
_IRI_SAFE = re.compile(r"^[^\s<>\"{}|^`\\]+:[^\s<>\"{}|^`\\]*$")


class RegistryError(RuntimeError):
    """The registry did not answer, or answered with a problem; the message says which (shown on the page)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def iri_ref(iri: str) -> str:
    """``<iri>`` for a SPARQL text, refused (ValueError) if it could break out of the brackets."""
    if not _IRI_SAFE.match(iri):
        raise ValueError(f"not an absolute IRI: {iri!r}")
    return f"<{iri}>"


def problem_text(response: httpx.Response) -> str:
    """``401 bearer token required: send 'Authorization: Bearer <token>' to write`` from a problem+json answer."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    if not isinstance(body, dict):
        return f"{response.status_code} {str(body)[:200]}"
    detail = body.get("detail")
    return f"{response.status_code} {body.get('title', '')}" + (f": {detail}" if detail else "")


def bindings(body: Mapping[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a SPARQL JSON result, each value as its plain string."""
    columns = list(body.get("head", {}).get("vars", []))
    rows = [{name: str(cell.get("value", "")) for name, cell in row.items()} for row in body.get("results", {}).get("bindings", [])]
    return columns, rows


class RegistryClient:
    """Reads of the registry service (and the forwarded writes of a user who gives the token)."""

    def __init__(self, client: httpx.AsyncClient, label: str) -> None:
        self.client = client
        self.label = label  # what the page says the registry is

    @classmethod
    def in_process(cls, app: Any, label: str) -> RegistryClient:
        return cls(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry", timeout=30.0), label)

    @classmethod
    def remote(cls, url: str) -> RegistryClient:
        return cls(httpx.AsyncClient(base_url=url.rstrip("/"), timeout=30.0), url)

    async def close(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request as is (the proxy and forwarded writes); RegistryError if the registry cannot be reached."""
        try:
            return await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RegistryError(f"the registry {self.label} did not answer: {exc.__class__.__name__}: {exc}") from None

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RegistryError(problem_text(response), response.status_code)
        try:
            return response.json()
        except ValueError:
            raise RegistryError(f"the registry {self.label} answered {path} with no JSON") from None

    async def select(self, sparql: str) -> tuple[list[str], list[dict[str, str]]]:
        """A SELECT/ASK through ``/sparql`` (the service's limits apply): (columns, rows)."""
        body = await self._json("POST", "/sparql", data={"query": sparql}, headers={"Accept": SPARQL_JSON})
        if "boolean" in body:
            return ["boolean"], [{"boolean": str(body["boolean"]).lower()}]
        return bindings(body)

    async def named(self, name: str, params: Mapping[str, str]) -> tuple[list[str], list[dict[str, str]]]:
        """A shipped named query (``/queries/{name}``) with its parameters bound by the service."""
        return bindings(await self._json("GET", f"/queries/{name}", params=dict(params), headers={"Accept": SPARQL_JSON}))

    async def queries(self) -> list[dict[str, Any]]:
        """The named queries with their parameters (``/queries``)."""
        return list(await self._json("GET", "/queries"))

    async def things(self) -> list[dict[str, Any]]:
        """Every live Thing Description, page by page (at most ``PAGE * MAX_PAGES``)."""
        out: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            batch = await self._json("GET", "/things", params={"offset": page * PAGE, "limit": PAGE})
            out.extend(td for td in batch if isinstance(td, dict))
            if len(batch) < PAGE:
                break
        return out

    async def thing(self, thing_id: str) -> dict[str, Any] | None:
        response = await self.request("GET", f"/things/{quote(thing_id, safe=':')}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RegistryError(problem_text(response), response.status_code)
        return response.json()

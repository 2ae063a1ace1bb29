"""The remote registry backend: rdflib's SPARQLUpdateStore with its HTTP exchange done properly.

Why not rdflib's own: its connector (rdflib 7.6) asks only for XML results, sends no bearer
token, returns an ``(status, message, None)`` tuple instead of raising when a POST fails (the
caller then crashes with a traceback far from the cause), hides a failed GET behind "You did
something wrong", and has no timeout. Here every query and update is one form-encoded POST
(SPARQL 1.1 Protocol 2.1.2 / 2.2.1) with an ``Accept`` for JSON *and* XML results and RDF
graphs, an optional ``Authorization: Bearer``, a timeout, and any failure becomes a
one-line :class:`~ontology.store_terms.StoreError` carrying the server's own explanation
(the ``detail`` of a problem+json answer, or the first line of a plain-text one).

Endpoints: ``http://host/sparql`` (ours: one endpoint for both), or a URL ending in ``/query``
whose updates go to the sibling ``/update`` (Oxigraph's ``oxigraph serve``, Fuseki).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore
from rdflib.query import Result

from ontology.store_terms import QueryTimeout, StoreError

#: Environment variable holding the bearer token for writes (the same one ``registry serve`` reads).
TOKEN_ENV = "TINYFLEET_REGISTRY_TOKEN"

#: What we can read back, preferred first: SELECT/ASK results, then CONSTRUCT/DESCRIBE graphs.
ACCEPT = ("application/sparql-results+json, application/sparql-results+xml;q=0.9, "
          "application/n-triples, text/turtle;q=0.9, application/rdf+xml;q=0.8")


class RemoteRefused(StoreError, ValueError):
    """The remote endpoint answered 400: the query or update itself is at fault (a ValueError, like a local parse error)."""


def update_endpoint_for(query_url: str) -> str:
    """Where updates go for a query endpoint: ``…/query`` -> ``…/update``, else the same URL."""
    if query_url.rstrip("/").endswith("/query"):
        return query_url.rstrip("/")[: -len("query")] + "update"
    return query_url


class RemoteSparqlStore(SPARQLUpdateStore):
    """SPARQLUpdateStore whose queries and updates are form POSTs with a token, a timeout and one-line errors."""

    def __init__(self, query_url: str, update_url: str | None = None, *, token: str | None = None,
                 timeout_s: float = 60.0) -> None:
        super().__init__(query_endpoint=query_url, update_endpoint=update_url or update_endpoint_for(query_url),
                         method="POST_FORM", returnFormat="json", autocommit=True)
        self.token = token
        self.timeout_s = timeout_s

    def _post(self, url: str, form: dict[str, str], what: str) -> tuple[bytes, str]:
        headers = {"Accept": ACCEPT, "Content-Type": "application/x-www-form-urlencoded"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=urlencode(form).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - the user's own URL
                return response.read(), response.headers.get("Content-Type", "").split(";")[0].strip()
        except urllib.error.HTTPError as exc:
            message = f"{what} at {url} refused: HTTP {exc.code} {exc.reason}{_explanation(exc)}"
            if exc.code == 400:
                raise RemoteRefused(message) from None
            raise StoreError(message) from None
        except (TimeoutError, socket.timeout):
            raise QueryTimeout(f"{what} at {url} got no answer in {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            raise StoreError(f"cannot reach the registry store at {url}: {exc.reason}") from None
        except OSError as exc:
            raise StoreError(f"cannot reach the registry store at {url}: {exc}") from None

    def _query(self, query: str, default_graph: str | None = None, named_graph: str | None = None, **_: Any) -> Result:
        self._queries += 1
        body, media_type = self._post(self.query_endpoint, {"query": query}, "query")
        try:
            return Result.parse(BytesIO(body), content_type=media_type or None)
        except Exception as exc:  # noqa: BLE001 - any parser's failure means the same thing
            raise StoreError(f"query at {self.query_endpoint}: cannot read its {media_type or 'untyped'} answer: {exc}") from None

    def _update(self, update: str) -> None:
        self._updates += 1
        self._post(self.update_endpoint, {"update": update}, "update")


def _explanation(exc: urllib.error.HTTPError) -> str:
    """': <detail>' from an error answer: problem+json's detail/title, else its first line of text."""
    try:
        raw = exc.read(4096)
    except Exception:  # noqa: BLE001 - no body is fine
        return ""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and (doc.get("detail") or doc.get("title")):
        text = str(doc.get("detail") or doc.get("title"))
    line = text.splitlines()[0] if text else ""
    return f": {line[:300]}" if line else ""

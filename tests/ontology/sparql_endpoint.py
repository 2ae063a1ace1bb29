"""A minimal SPARQL 1.1 Protocol server over pyoxigraph, on loopback, for testing the remote backend.

It speaks just what rdflib's SPARQLUpdateStore sends (form-encoded ``query``
/ ``update`` POSTs, ``query`` GETs) so the remote code path is exercised over
real HTTP against a real store rather than a mock.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pyoxigraph as ox


class _Handler(BaseHTTPRequestHandler):
    store: ox.Store

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _params(self) -> dict[str, str]:
        params = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        if ctype == "application/x-www-form-urlencoded":
            params.update({k: v[0] for k, v in parse_qs(body).items()})
        elif ctype == "application/sparql-update":
            params["update"] = body
        elif ctype == "application/sparql-query":
            params["query"] = body
        return params

    def _answer(self, params: dict[str, str]) -> None:
        try:
            if "update" in params:
                self.store.update(params["update"])
                self.send_response(204)
                self.end_headers()
                return
            result = self.store.query(params["query"], use_default_graph_as_union=True)
            if isinstance(result, ox.QueryTriples):
                body, ctype = result.serialize(format=ox.RdfFormat.N_TRIPLES), "application/n-triples"
            else:
                body, ctype = result.serialize(format=ox.QueryResultsFormat.JSON), "application/sparql-results+json"
        except (SyntaxError, KeyError) as exc:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(exc).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(self._params())

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._params())


class SparqlEndpoint:
    """Context manager: ``with SparqlEndpoint() as url: ...`` serves an in-memory store at ``url``."""

    def __init__(self) -> None:
        self.store = ox.Store()
        handler = type("Handler", (_Handler,), {"store": self.store})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/sparql"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The Things directory: Thing Descriptions stored as documents *and* as RDF, with leases.

Why a module of its own: the HTTP service (``/things``) and the CLI (``add``)
register Things the same way, and the rules below must hold whichever door a
TD comes through (WoT Discovery 1.0, "Things API" subset):

* A Thing lives in the named graph named by its ``id``. That graph holds the
  RDF of the TD (what SPARQL matchmaking reads) *and* the TD's JSON text
  (``tf:thingDescriptionDocument``, what ``GET /things/{id}`` returns), so
  both change in the single ``DROP GRAPH ; INSERT DATA`` transaction of
  :meth:`RegistryStore.put_graph`: a crash leaves the old or the new Thing,
  never a document without its facts.
* Every write is checked first (TD structure, JSON-LD, SHACL shapes); a refused
  TD raises :class:`ThingRejected` and nothing is written, so a bad PATCH
  leaves the stored TD exactly as it was.
* ``registration.ttl`` (seconds) becomes ``registration.expires`` in the stored
  TD and ``tf:registrationExpires`` in its RDF. Expired Things are deleted by
  :meth:`Directory.purge_expired` (one atomic SPARQL update; the service runs
  it periodically and before listing) and are never returned by :meth:`get`.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import XSD

from ontology.rdf_input import InvalidRDF, parse_json_document
from ontology.store import RegistryStore, check_iri
from ontology.td_validation import rule_problems, schema_problems
from ontology.thing_description import TD_CONTEXT_URL, device_iri, td_to_graph
from ontology.validation import DescriptionRejected, check_description
from ontology.vocab import TF

#: TD context URLs accepted as "this is a Thing Description".
TD_CONTEXTS = (TD_CONTEXT_URL, "https://www.w3.org/2019/wot/td/v1")
#: Longest lease a registration may ask for (one year): a typo of extra zeros should not pin a device forever.
MAX_TTL_S = 365 * 24 * 3600

_PREFIX = "PREFIX tf: <https://w3id.org/tinyfleet#>\nPREFIX xsd: <http://www.w3.org/2001/XMLSchema#>\n"


class ThingRejected(ValueError):
    """The TD cannot be stored as sent; ``problems`` lists what to fix. Nothing was written."""

    def __init__(self, summary: str, problems: list[str]) -> None:
        self.summary = summary
        self.problems = problems
        detail = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{summary}:\n{detail}" if problems else summary)


def now_utc() -> datetime:
    """Current time in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``2025-01-01T00:00:00Z`` form of a UTC datetime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def thing_iri(thing_id: str) -> str:
    """The IRI a path segment names: an absolute IRI as is, a bare device id as the TinyFleet device IRI."""
    if ":" in thing_id:
        return str(check_iri(thing_id))
    return device_iri(thing_id)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch of ``target`` by ``patch`` (a new value; inputs are not modified)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def structural_problems(td: Any) -> list[str]:
    """What keeps ``td`` from being a TD 1.1 at all (the fields the TD spec makes mandatory)."""
    if not isinstance(td, dict):
        return ["a Thing Description must be a JSON object"]
    problems = []
    context = td.get("@context")
    first = context[0] if isinstance(context, list) and context else context
    if first not in TD_CONTEXTS:
        problems.append(f"@context must be {TD_CONTEXT_URL!r} or a list starting with it (got {context!r})")
    if not isinstance(td.get("title"), str) or not td.get("title"):
        problems.append("'title' is required: a non-empty string")
    if not isinstance(td.get("securityDefinitions"), dict) or not td.get("securityDefinitions"):
        problems.append("'securityDefinitions' is required: an object with at least one scheme, e.g. {\"nosec_sc\": {\"scheme\": \"nosec\"}}")
    security = td.get("security")
    if not (isinstance(security, str) or (isinstance(security, list) and security)):
        problems.append("'security' is required: the name (or list of names) of a securityDefinitions entry")
    if "id" in td and not isinstance(td["id"], str):
        problems.append("'id' must be a string IRI")
    return problems


def _lease(registration: Any, now: datetime) -> tuple[dict[str, Any], datetime | None]:
    """Validated registration info and its expiry, from a TD's ``registration`` member."""
    if registration is None:
        return {}, None
    if not isinstance(registration, dict):
        raise ThingRejected("invalid registration", ["'registration' must be an object such as {\"ttl\": 3600}"])
    info = dict(registration)
    ttl = info.get("ttl")
    if ttl is None:
        info.pop("expires", None)  # a stale server-set expiry without a ttl means "no lease"
        return info, None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL_S:
        raise ThingRejected("invalid registration", [f"registration.ttl must be a number of seconds in (0, {MAX_TTL_S}] (got {ttl!r})"])
    expires = now + timedelta(seconds=float(ttl))
    if expires.microsecond:  # timestamps carry whole seconds: round up so a lease is never shorter than asked
        expires = expires.replace(microsecond=0) + timedelta(seconds=1)
    info["expires"] = iso(expires)
    return info, expires


def check_td(td: Any) -> Graph:
    """RDF of a TD that passes the structural checks and the shapes, else ThingRejected listing *every* problem.

    Structure and shapes are both checked even when the first fails, so one
    round trip tells the sender everything to fix.
    """
    problems = structural_problems(td)
    if not isinstance(td, dict):
        raise ThingRejected("not a valid Thing Description", problems)
    problems += [p for p in schema_problems(td) if not _said(p, problems)]
    problems += rule_problems(td)
    try:
        graph = td_to_graph({k: v for k, v in td.items() if k != "registration"})
        check_description(graph)
    except InvalidRDF as exc:
        problems.append(str(exc))
    except DescriptionRejected as exc:
        problems.extend(str(v) for v in exc.violations)
    if problems:
        raise ThingRejected("not a valid TinyFleet Thing Description", problems)
    return graph


def _said(schema_problem: str, problems: list[str]) -> bool:
    """Whether a schema "'x' is a required property" repeats a structural problem already naming 'x'."""
    if "is a required property" not in schema_problem:
        return False
    name = schema_problem.split("'")[1] if schema_problem.count("'") >= 2 else ""
    return any(f"'{name}'" in p or name in p.split(" ", 1)[0] for p in problems)


@dataclass
class StoredThing:
    """A TD as the directory returns it, with its lease."""

    id: str
    document: dict[str, Any]
    expires: datetime | None


class Directory:
    """Register, read, patch, delete and expire Thing Descriptions in a RegistryStore."""

    def __init__(self, store: RegistryStore, *, query_timeout_s: float = 10.0) -> None:
        self.store = store
        self.query_timeout_s = query_timeout_s
        self._write_lock = threading.Lock()  # read-modify-write (PATCH, created timestamps) must not interleave

    # -- writing -----------------------------------------------------------------

    def put(self, thing_id: str, td: Any) -> bool:
        """Create or replace the Thing ``thing_id`` with ``td``; True if it was created."""
        iri = thing_iri(thing_id)
        with self._write_lock:
            existing = self._load(iri)
            created = existing.document.get("registration", {}).get("created") if existing else None
            self._store(iri, td, created=created)
            return existing is None

    def create_anonymous(self, td: Any) -> str:
        """Store a TD that has no ``id`` under a new ``urn:uuid:`` id, which is returned."""
        if isinstance(td, dict) and "id" in td:
            raise ThingRejected("this TD has an id", ["POST /things is for anonymous TDs; register a TD with an id by PUT /things/{id}"])
        iri = f"urn:uuid:{uuid.uuid4()}"
        with self._write_lock:
            self._store(iri, td, created=None)
        return iri

    def patch(self, thing_id: str, patch: Any) -> None:
        """Apply a JSON Merge Patch; the result is re-validated and stored only if it passes."""
        iri = thing_iri(thing_id)
        if not isinstance(patch, dict):
            raise ThingRejected("invalid merge patch", ["a merge patch for a TD must be a JSON object"])
        with self._write_lock:
            existing = self._load(iri)
            if existing is None:
                raise KeyError(iri)
            merged = merge_patch(existing.document, patch)
            if merged.get("id") != iri:
                raise ThingRejected("invalid merge patch", ["a patch cannot change or remove the TD's 'id'"])
            renew = isinstance(patch.get("registration"), dict) and "ttl" in patch["registration"]
            self._store(iri, merged, created=existing.document.get("registration", {}).get("created"), keep_expiry=None if renew else existing.expires)

    def delete(self, thing_id: str) -> bool:
        """Remove the Thing; False if there was none."""
        iri = thing_iri(thing_id)
        with self._write_lock:
            return self.store.delete_graph(iri)

    def purge_expired(self) -> None:
        """Delete every registration whose lease has run out, in one atomic update."""
        with self._write_lock:
            self.store.update(
                _PREFIX + "DELETE { GRAPH ?g { ?s ?p ?o } } WHERE {\n"
                "  GRAPH ?g { ?g tf:registrationExpires ?expires . ?s ?p ?o }\n"
                "  FILTER(?expires <= NOW())\n}",
                derive=False,  # whole graphs go, their derived facts with them
            )
            self.store.prune_capabilities()

    def _store(self, iri: str, td: Any, *, created: str | None, keep_expiry: datetime | None = None) -> None:
        if not isinstance(td, dict):
            raise ThingRejected("not a valid Thing Description", structural_problems(td))
        if "id" in td and td["id"] != iri:
            raise ThingRejected("id mismatch", [f"the TD's id {td['id']!r} differs from the id in the URL {iri!r}"])
        now = now_utc()
        document = dict(td)
        document["id"] = iri
        registration, expires = _lease(document.get("registration"), now)
        if keep_expiry is not None and "ttl" in registration:
            expires = keep_expiry
            registration["expires"] = iso(keep_expiry)
        registration["created"] = created or iso(now)
        registration["modified"] = iso(now)
        document["registration"] = registration
        graph = check_td(document)
        subject = URIRef(iri)
        if expires is not None:
            graph.set((subject, TF.registrationExpires, Literal(iso(expires), datatype=XSD.dateTime)))
        graph.add((subject, TF.thingDescriptionDocument, Literal(json.dumps(document, ensure_ascii=False))))
        self.store.put_graph(iri, graph)

    # -- reading -----------------------------------------------------------------

    def get(self, thing_id: str) -> StoredThing | None:
        """The stored TD, or None if absent or expired (an expired one is purged on the way)."""
        iri = thing_iri(thing_id)
        thing = self._load(iri)
        if thing is not None and thing.expires is not None and thing.expires <= now_utc():
            self.purge_expired()
            return None
        return thing

    def list(self, *, offset: int = 0, limit: int = 100) -> tuple[list[StoredThing], int]:
        """One page of live Things ordered by id, and how many live Things there are in all."""
        offset, limit = int(offset), int(limit)  # formatted into the query below, so only ints
        self.purge_expired()
        where = "GRAPH ?g { ?g tf:thingDescriptionDocument ?doc OPTIONAL { ?g tf:registrationExpires ?expires } }"
        count = self.store.query(_PREFIX + f"SELECT (COUNT(?g) AS ?n) WHERE {{ {where} }}", timeout_s=self.query_timeout_s)
        page = self.store.query(
            _PREFIX + f"SELECT ?g ?doc ?expires WHERE {{ {where} }} ORDER BY ?g LIMIT {limit} OFFSET {offset}",
            timeout_s=self.query_timeout_s,
            max_results=None,
        )
        things = [self._thing(str(g), str(doc), expires) for g, doc, expires in page.rows]
        return things, int(count.rows[0][0].toPython()) if count.rows else 0

    def _load(self, iri: str) -> StoredThing | None:
        result = self.store.query(
            _PREFIX + "SELECT ?g ?doc ?expires WHERE { GRAPH ?g { ?g tf:thingDescriptionDocument ?doc "
            "OPTIONAL { ?g tf:registrationExpires ?expires } } }",
            {"g": URIRef(iri)},
            timeout_s=self.query_timeout_s,
        )
        if not result.rows:
            return None
        _g, doc, expires = result.rows[0]
        return self._thing(iri, str(doc), expires)

    @staticmethod
    def _thing(iri: str, doc: str, expires: Any) -> StoredThing:
        moment = expires.toPython() if isinstance(expires, Literal) else None
        if isinstance(moment, datetime) and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return StoredThing(id=iri, document=json.loads(doc), expires=moment if isinstance(moment, datetime) else None)


def parse_json_body(body: bytes | str) -> Any:
    """A request body as JSON, or ThingRejected saying where it breaks (also: too deep, duplicate member names)."""
    try:
        return parse_json_document(body)
    except UnicodeDecodeError as exc:
        raise ThingRejected("malformed JSON", [f"the body is not JSON: {exc}"]) from None
    except InvalidRDF as exc:
        raise ThingRejected("malformed JSON", [str(exc)]) from None


__all__ = [
    "Directory", "StoredThing", "ThingRejected", "merge_patch", "structural_problems", "thing_iri", "parse_json_body",
]

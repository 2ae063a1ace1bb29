"""Backend-independent pieces of the registry store: errors, answers, deadlines, term conversion.

Why a module of its own: :mod:`ontology.store` (the store) and :mod:`ontology.query_sandbox` (the
killable worker that runs untrusted queries) both build :class:`QueryResult` answers from engine
results, and converting pyoxigraph terms fast is a job apart from keeping named graphs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdflib import Graph, Literal, URIRef
from rdflib.query import Result
from rdflib.term import Node

from ontology.vocab import bind_prefixes

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")


class StoreError(RuntimeError):
    """The store could not be opened or written; the message says which and why."""


class QueryTimeout(StoreError):
    """The query ran past its deadline and was abandoned."""


@dataclass
class QueryResult:
    """A materialised, capped query answer, independent of the backend."""

    kind: str  # "SELECT", "ASK", "CONSTRUCT" (also DESCRIBE)
    variables: list[str] = field(default_factory=list)
    rows: list[tuple[Node | None, ...]] = field(default_factory=list)
    boolean: bool | None = None
    graph: Graph | None = None
    truncated: bool = False


def check_iri(iri: str) -> URIRef:
    """URIRef of ``iri`` if it is an absolute IRI without characters that could break SPARQL syntax,
    and one Oxigraph accepts (RFC 3987: no U+FFFD or other forbidden code points, well-formed ``%xx``)."""
    if not isinstance(iri, str) or not _IRI.match(iri):
        raise ValueError(f"{iri!r} is not an absolute IRI (scheme:..., no spaces or <>\"{{}}|\\^`)")
    try:
        from pyoxigraph import NamedNode
    except ImportError:  # pragma: no cover - the registry always has pyoxigraph; the regex above still holds
        return URIRef(iri)
    try:
        NamedNode(iri)
    except ValueError as exc:
        raise ValueError(f"{iri!r} is not a valid IRI: {exc}") from None
    return URIRef(iri)


def _release(result: Result) -> None:
    """Drop a partly read answer on this thread: pyoxigraph solution iterators must die where they were born."""
    pending = getattr(result, "_genbindings", None)
    if pending is not None and hasattr(pending, "close"):
        pending.close()
    result._genbindings = None  # type: ignore[attr-defined]


class _Stop(Protocol):
    def is_set(self) -> bool: ...


class _Deadline:
    """``is_set()`` once ``timeout_s`` has passed (checked between solutions on the caller's thread)."""

    def __init__(self, timeout_s: float | None) -> None:
        self.started = time.monotonic()
        self.deadline = None if timeout_s is None else self.started + timeout_s
        self.passed = False

    def is_set(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.passed = True
        return self.passed

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _query_error(exc: Exception) -> Exception:
    """A parse error of either engine as ValueError (the caller's mistake); anything else unchanged."""
    if isinstance(exc, SyntaxError) or "ParseException" in type(exc).__name__:
        return ValueError(f"invalid SPARQL query: {exc}")
    return exc


_XSD = "http://www.w3.org/2001/XMLSchema#"
_INTEGER, _STRING = URIRef(_XSD + "integer"), URIRef(_XSD + "string")
XSD_INTEGER = _INTEGER


def _plain_literal(lexical: str, datatype: URIRef, value: object) -> Literal:
    """The Literal that ``Literal(lexical, datatype=datatype)`` builds, without re-parsing the lexical form.

    Why: rdflib's constructor costs ~8 us (cast, well-formedness check, normalisation) and a
    10,000-row answer holds thousands of distinct integers and names; Oxigraph hands us canonical
    lexical forms whose value we already know. Used only for xsd:integer / xsd:string and only
    while :func:`_fast_literals_agree` holds for the installed rdflib.
    """
    literal = str.__new__(Literal, lexical)
    literal._language = None  # type: ignore[attr-defined]
    literal._datatype = datatype  # type: ignore[attr-defined]
    literal._value = value  # type: ignore[attr-defined]
    literal._ill_typed = False  # type: ignore[attr-defined]
    return literal


def _iri(value: str) -> URIRef:
    """``URIRef(value)`` for an IRI Oxigraph already validated, without rdflib re-checking it (~1 us a row)."""
    return str.__new__(URIRef, value)


def _fast_literals_agree() -> bool:
    """Whether :func:`_plain_literal` builds exactly what rdflib's constructor does (else it is not used)."""
    try:
        for lexical, datatype, value in (("12345", _INTEGER, 12345), ("-7", _INTEGER, -7), ("kws-small", _STRING, "kws-small")):
            fast, slow = _plain_literal(lexical, datatype, value), Literal(lexical, datatype=datatype)
            same = (fast == slow and hash(fast) == hash(slow) and fast.n3() == slow.n3() and fast.value == slow.value
                    and fast.datatype == slow.datatype and fast.language == slow.language and fast.ill_typed == slow.ill_typed
                    and fast.toPython() == slow.toPython() and fast.eq(slow))
            if not same:
                return False
        iri = "https://w3id.org/tinyfleet/id/device/x"
        fast_iri, slow_iri = _iri(iri), URIRef(iri)
        return type(fast_iri) is type(slow_iri) and fast_iri == slow_iri and hash(fast_iri) == hash(slow_iri) and fast_iri.n3() == slow_iri.n3()
    except Exception:  # noqa: BLE001 - any surprise means: use rdflib's constructor
        return False


_FAST_LITERALS = _fast_literals_agree()


_OX: dict[str, Any] = {}  # pyoxigraph's term classes and oxrdflib's converter, bound on first use


def _bind_oxigraph() -> dict[str, Any]:
    import pyoxigraph as ox
    from oxrdflib._converter import from_ox

    _OX.update(named_node=ox.NamedNode, literal=ox.Literal, from_ox=from_ox,
               string=ox.NamedNode(_XSD + "string"), integer=ox.NamedNode(_XSD + "integer"))
    return _OX


def from_oxigraph(term: Any) -> Any:
    """rdflib term for a pyoxigraph term (as oxrdflib's ``from_ox``, with fast paths for IRIs, integers, strings).

    Called once per distinct term of an answer (a 10,000-row answer may hold tens of thousands), so it
    is written for speed: type identity tests, the datatype compared as a pyoxigraph term.
    """
    ox = _OX or _bind_oxigraph()
    kind = type(term)
    if _FAST_LITERALS:
        if kind is ox["named_node"]:
            return str.__new__(URIRef, term.value)
        if kind is ox["literal"]:
            datatype = term.datatype  # rdf:langString for a language-tagged one, so no language below
            if datatype == ox["string"]:
                lexical = term.value
                return _plain_literal(lexical, _STRING, lexical)
            if datatype == ox["integer"]:
                lexical = term.value
                try:
                    number = int(lexical)
                except ValueError:
                    number = None
                if number is not None and str(number) == lexical:
                    return _plain_literal(lexical, _INTEGER, number)
    elif kind is ox["named_node"]:
        return URIRef(term.value)
    return ox["from_ox"](term)


class _TermMemo(dict):
    """pyoxigraph term -> rdflib term, converted on first use (``None``, an unbound cell, stays ``None``)."""

    def __init__(self) -> None:
        super().__init__({None: None})

    def __missing__(self, key: Any) -> Any:
        value = self[key] = from_oxigraph(key)
        return value



def materialise(result: Result, cap: int | None, cancel: _Stop) -> QueryResult:
    if result.type == "ASK":
        return QueryResult(kind="ASK", boolean=bool(result.askAnswer))
    if result.type in ("CONSTRUCT", "DESCRIBE"):
        graph = bind_prefixes(Graph())
        truncated = False
        for triple in result.graph or ():
            if cancel.is_set():
                break
            if cap is not None and len(graph) >= cap:
                truncated = True
                break
            graph.add(triple)
        return QueryResult(kind="CONSTRUCT", graph=graph, truncated=truncated)
    variables = [str(v) for v in result.vars or []]
    rows: list[tuple[Node | None, ...]] = []
    truncated = False
    for row in result:
        if cancel.is_set():
            break
        if cap is not None and len(rows) >= cap:
            truncated = True
            break
        rows.append(tuple(row))  # type: ignore[arg-type]
    return QueryResult(kind="SELECT", variables=variables, rows=rows, truncated=truncated)

"""Named SPARQL queries shipped as ``queries/*.rq``, run with safely bound parameters.

Each file declares itself in comment lines at the top::

    # summary: what the query answers
    # param device iri  what the parameter means

Parameter values from the command line or HTTP are converted to RDF terms of
the declared kind (an IRI is checked to be a well-formed absolute IRI, a
number is parsed as one) and handed to the store as *bindings* (Oxigraph
substitutions / a SPARQL ``VALUES`` block built from escaped terms). The query
text is never edited, so a value cannot change what the query does.
Queries are written so that a pre-bound parameter and a trailing ``VALUES``
join give the same answer: parameters appear in triple patterns, are
projected (Oxigraph only substitutes projected variables) and are grouped on
where the query aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import repeat
from operator import is_, itemgetter
from pathlib import Path

from rdflib import Literal
from rdflib.namespace import XSD
from rdflib.term import Identifier

from ontology.store import QueryResult, RegistryStore, check_iri
from ontology.vocab import QUERIES_DIR

KINDS = ("iri", "string", "integer", "decimal", "dateTime")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    doc: str


@dataclass(frozen=True)
class NamedQuery:
    name: str
    summary: str
    text: str
    params: tuple[Param, ...]
    #: Columns the registry sorts the rows by (``# order: a b``), in place of a slow ORDER BY in the text.
    order: tuple[str, ...] = ()


class QueryParamError(ValueError):
    """A parameter is missing, unknown or not of its declared kind; the query did not run."""


def parse_named_query(name: str, text: str) -> NamedQuery:
    """Read the ``# summary:`` / ``# param NAME KIND DOC`` header of a query file."""
    summary = ""
    params: list[Param] = []
    order: tuple[str, ...] = ()
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if body.startswith("summary:"):
            summary = body[len("summary:") :].strip()
        elif body.startswith("order:"):
            order = tuple(body[len("order:") :].split())
        elif body.startswith("param "):
            parts = body.split(None, 3)
            if len(parts) < 3 or parts[2] not in KINDS:
                raise ValueError(f"query {name}: bad param line {line!r}; expected '# param NAME {'|'.join(KINDS)} DOC'")
            params.append(Param(parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
    return NamedQuery(name=name, summary=summary, text=text, params=tuple(params), order=order)


@lru_cache(maxsize=1)
def named_queries(directory: Path = QUERIES_DIR) -> dict[str, NamedQuery]:
    """All shipped queries by name (file stem)."""
    return {p.stem: parse_named_query(p.stem, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.rq"))}


def get_named_query(name: str) -> NamedQuery:
    queries = named_queries()
    if name not in queries:
        raise QueryParamError(f"no named query {name!r}; known: {', '.join(queries)}")
    return queries[name]


def to_term(param: Param, raw: str) -> Identifier:
    """RDF term for a raw parameter value, or QueryParamError saying what was expected."""
    try:
        if param.kind == "iri":
            return check_iri(raw)
        if param.kind == "string":
            return Literal(raw, datatype=XSD.string)
        if param.kind == "integer":
            return Literal(int(raw), datatype=XSD.integer)
        if param.kind == "decimal":
            return Literal(Decimal(raw), datatype=XSD.decimal)
        if param.kind == "dateTime":
            return Literal(datetime.fromisoformat(raw), datatype=XSD.dateTime)
    except (ValueError, InvalidOperation) as exc:
        raise QueryParamError(f"parameter {param.name}: expected {param.kind}, got {raw!r} ({exc})") from None
    raise QueryParamError(f"parameter {param.name}: unsupported kind {param.kind}")


def bind_params(query: NamedQuery, raw: Mapping[str, str]) -> dict[str, Identifier]:
    """Bindings for ``query`` from raw strings; every declared parameter is required, no others allowed."""
    declared = {p.name: p for p in query.params}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise QueryParamError(f"query {query.name} has no parameter(s) {', '.join(unknown)}; it takes: {', '.join(declared) or 'none'}")
    missing = [n for n in declared if n not in raw]
    if missing:
        raise QueryParamError(f"query {query.name} needs parameter(s) {', '.join(missing)}")
    return {name: to_term(declared[name], value) for name, value in raw.items()}


def parse_param_args(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from ``--param`` options into a dict (value may contain '=')."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QueryParamError(f"--param expects NAME=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def run_named_query(store: RegistryStore, name: str, raw: Mapping[str, str], **options: object) -> QueryResult:
    """Run named query ``name`` with parameters ``raw`` against ``store``."""
    query = get_named_query(name)
    options.setdefault("isolate", False)  # shipped, index-driven plans: no watchdog thread (see RegistryStore.query)
    options.setdefault("self_contained", True)  # every shipped query declares its prefixes (tested)
    result = store.query(query.text, bind_params(query, raw), **options)  # type: ignore[arg-type]
    if query.order and result.kind == "SELECT":
        _sort(result.rows, [result.variables.index(column) for column in query.order])
    return result


def _sort(rows: list[tuple], index: list[int]) -> None:
    """Sort ``rows`` in place as SPARQL ORDER BY on these columns: unbound first, then by lexical form.

    One column without unbound cells (the shipped queries' case) is sorted by ``str`` alone, with C-level
    key and index calls: a Python key function per row cost as much as reading the row.
    """
    column = list(map(itemgetter(index[0]), rows)) if len(index) == 1 else []
    if len(index) == 1 and not any(map(is_, column, repeat(None))):
        keys = list(map(str, column))
        rows[:] = [rows[j] for j in sorted(range(len(rows)), key=keys.__getitem__)]
    else:
        rows.sort(key=lambda row: tuple((row[i] is not None, str(row[i] or "")) for i in index))

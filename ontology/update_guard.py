"""An untrusted SPARQL update's ``WHERE`` is tried first in a killable worker, so a costly one never starts writing.

Why: pyoxigraph runs an update as one transaction in the calling process and cannot cancel it.
A ``DELETE/INSERT … WHERE`` over a cross product would keep a core busy long after the client's
503, and it cannot run in a forked worker as queries do (:mod:`ontology.query_sandbox`): a child
writing through the inherited RocksDB handle would corrupt the store. So before the service
applies an update, each of its ``WHERE`` clauses runs as a read-only query,
``SELECT (COUNT(*) AS ?n) <its dataset> WHERE <its pattern>``, in such a worker with a budget:

* past the budget the worker is SIGKILLed and reaped (the CPU stops at once) and the update is
  refused with nothing written; the store never saw it, so no acknowledged write is touched;
* within it, the real update runs, at about the cost just measured (the same pattern on the same
  data): the service gives the check half of its write time limit, so a WHERE that needs more than
  that is refused before it writes.

Limits of the estimate, stated: every ``WHERE`` is counted on the store as it is *before* the
request, so in a request of several operations a later one is counted without the earlier ones'
changes; and the count does not include instantiating the templates (one quad per solution and
template triple). An update without ``WHERE`` (``INSERT DATA``, ``DELETE DATA``, ``CLEAR``,
``DROP``) has nothing to check: its cost is its own size, which the body cap bounds.
"""

from __future__ import annotations

from ontology.query_sandbox import _iri_end, run_in_worker
from ontology.sparql_protocol import _WORD_CHARS, _group_end, _tokens
from ontology.store import RegistryStore


def _term_after(text: str, at: int) -> tuple[str, int]:
    """The IRI (``<…>`` or a prefixed name) starting at the first non-space character from ``at``, and its end."""
    i, n = at, len(text)
    while i < n and text[i].isspace():
        i += 1
    if i < n and text[i] == "<":
        end = _iri_end(text, i)
        if end is not None:
            return text[i:end], end
    start = i
    while i < n and text[i] in _WORD_CHARS:
        i += 1
    return text[start:i], i


def where_queries(update: str) -> list[str]:
    """One ``SELECT (COUNT(*) AS ?n)`` query per operation of ``update`` that has a ``WHERE``.

    Each carries the request's prologue (``PREFIX``/``BASE``) and its operation's dataset:
    ``USING [NAMED] g`` becomes ``FROM [NAMED] g``, and ``WITH g`` (without ``USING``) ``FROM g``.

    >>> where_queries("PREFIX ex: <urn:ex:> WITH <urn:g> DELETE { ?s ex:p ?o } WHERE { ?s ex:p ?o }")
    ['PREFIX ex: <urn:ex:> SELECT (COUNT(*) AS ?n) FROM <urn:g> WHERE { ?s ex:p ?o }']
    >>> where_queries("INSERT DATA { <urn:a> <urn:b> <urn:c> }")
    []
    """
    prologue: list[str] = []
    queries: list[str] = []
    with_graph: str | None = None
    using: list[str] = []
    skip_until = 0
    for start, end, word, depth in _tokens(update):
        if depth or start < skip_until:
            continue
        if word == "PREFIX":
            name, after = _term_after(update, end)
            iri, skip_until = _term_after(update, after)
            prologue.append(f"PREFIX {name} {iri}")
        elif word == "BASE":
            iri, skip_until = _term_after(update, end)
            prologue.append(f"BASE {iri}")
        elif word == "WITH":
            with_graph, skip_until = _term_after(update, end)
        elif word == "USING":
            named, after = _term_after(update, end)
            if named.upper() == "NAMED":
                iri, skip_until = _term_after(update, after)
                using.append(f"FROM NAMED {iri}")
            else:
                skip_until = after
                using.append(f"FROM {named}")
        elif word == "WHERE":
            open_at = update.find("{", end)
            close_at = _group_end(update, open_at) if open_at >= 0 else -1
            if close_at > 0:
                dataset = using or ([f"FROM {with_graph}"] if with_graph else [])
                queries.append(" ".join([*prologue, "SELECT (COUNT(*) AS ?n)", *dataset, "WHERE", update[open_at:close_at]]))
                skip_until = close_at
            with_graph, using = None, []
    return queries


def check_update_cost(store: RegistryStore, update: str, *, budget_s: float, memory_bytes: int,
                      base_iri: str | None = None) -> int:
    """Count the solutions of each ``WHERE`` of ``update`` in a forked worker killed at ``budget_s``.

    Returns the total count. Raises :class:`~ontology.store.QueryTimeout` past the budget and
    :class:`~ontology.query_sandbox.WorkerDied` if the worker crashed or ran out of its
    ``memory_bytes``; an unparsable pattern is left for the update itself to report.
    """
    queries = where_queries(update)
    if not queries:
        return 0

    def work() -> int:
        total = 0
        for query in queries:
            try:
                rows = store.query(query, timeout_s=None, max_results=None, isolate=False, base_iri=base_iri).rows
            except ValueError:
                return total  # not a query we could form: the update's own parse says what is wrong
            total += int(rows[0][0].toPython()) if rows and rows[0][0] is not None else 0
        return total

    return run_in_worker(work, timeout_s=budget_s, memory_bytes=memory_bytes)


__all__ = ["check_update_cost", "where_queries"]

"""SPARQL 1.1 Protocol dataset parameters: ``default-graph-uri``/``named-graph-uri`` and ``using-(named-)graph-uri``.

Why a module of its own: the service reads the parameters, the store applies them, and an
update's ``using-graph-uri`` must become ``USING`` clauses in the update's text (Oxigraph's
update API takes no dataset), which needs the same careful scan as the query shape check.

The registry's default graph, defined once (docs/registry.md, "The default graph"):

* a query with no dataset (no ``FROM``, no protocol parameters) reads the **union of all
  named graphs** as its default graph, since every description lives in a graph of its own;
* ``default-graph-uri``/``named-graph-uri`` (or ``FROM``/``FROM NAMED``) replace that with
  exactly the graphs named, the protocol parameters winning over the query's own
  (SPARQL 1.1 Protocol § 2.1.4); ``named-graph-uri`` alone leaves an empty default graph;
* an update's ``WHERE`` reads the same union: each ``INSERT``/``DELETE … WHERE`` gets
  ``USING`` clauses (from ``using-graph-uri``, or else every named graph in the store) so it
  matches what the same pattern matches in a query;
* ``using-graph-uri`` together with ``USING``/``WITH`` in the update is refused (§ 2.2.3).

Relative IRIs resolve against the endpoint's URL (§ 2.1.4 / 2.2.3 allow a service-defined base).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ontology.query_sandbox import _iri_end, _skip_string
from ontology.store_terms import check_iri

_WORD_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.-%?$@")


class DatasetConflict(ValueError):
    """The request names a dataset twice (protocol parameters and ``USING``/``WITH`` in the update)."""


@dataclass(frozen=True)
class Dataset:
    """An RDF dataset named by a request: ``None`` for a part that was not given."""

    default_graphs: tuple[str, ...] | None = None
    named_graphs: tuple[str, ...] | None = None

    @property
    def given(self) -> bool:
        return self.default_graphs is not None or self.named_graphs is not None

    @staticmethod
    def of(default_graphs: Sequence[str], named_graphs: Sequence[str]) -> Dataset:
        """From protocol parameter values (each must be an absolute IRI: ValueError otherwise)."""
        for iri in (*default_graphs, *named_graphs):
            check_iri(iri)
        if not default_graphs and not named_graphs:
            return Dataset()
        return Dataset(tuple(default_graphs), tuple(named_graphs))


def _tokens(text: str) -> Iterable[tuple[int, int, str, int]]:
    """(start, end, upper-cased keyword, brace depth) of each bare word of ``text``, skipping strings, IRIs, comments."""
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            depth += 1
            i += 1
        elif c == "}":
            depth = max(0, depth - 1)
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "\"'":
            i = _skip_string(text, i)
        elif c == "<" and (end := _iri_end(text, i)) is not None:
            i = end
        elif c in _WORD_CHARS:
            start = i
            while i < n and text[i] in _WORD_CHARS:
                i += 1
            yield start, i, text[start:i].upper(), depth
        else:
            i += 1


def implicit_graphs(update: str) -> str:
    """``update`` with ``SILENT`` added to each ``CLEAR``/``DROP``: the registry does not record empty graphs.

    A graph exists in the registry while it holds a triple (``has_graph``), so clearing or dropping
    one that holds nothing is a no-op, as SPARQL 1.1 Update § 3.2 allows for such stores, instead
    of Oxigraph's "graph does not exist" error.

    >>> implicit_graphs("CLEAR GRAPH <urn:g> ; DROP SILENT GRAPH <urn:h>")
    'CLEAR SILENT GRAPH <urn:g> ; DROP SILENT GRAPH <urn:h>'
    """
    tokens = [t for t in _tokens(update) if t[3] == 0]
    inserts = [end for (_s, end, word, _d), nxt in zip(tokens, [*tokens[1:], None], strict=True)
               if word in ("CLEAR", "DROP") and (nxt is None or nxt[2] != "SILENT")]
    out = update
    for position in reversed(inserts):
        out = out[:position] + " SILENT" + out[position:]
    return out


def names_dataset(query: str) -> bool:
    """Whether ``query`` has its own ``FROM``/``FROM NAMED`` clause (then it reads exactly those graphs, not the union).

    >>> names_dataset("SELECT * FROM <urn:g> WHERE { ?s ?p ?o }"), names_dataset("SELECT * WHERE { ?s <urn:FROM> 'FROM' }")
    (True, False)
    """
    return "FROM" in query.upper() and any(word == "FROM" and depth == 0 for _s, _e, word, depth in _tokens(query))


def has_where(update: str) -> bool:
    """Whether ``update`` has an operation with a ``WHERE`` (one :func:`with_using` would change)."""
    return any(word == "WHERE" and depth == 0 for _s, _e, word, depth in _tokens(update))


def with_using(update: str, default_graphs: Sequence[str], named_graphs: Sequence[str] = ()) -> str:
    """``update`` with ``USING <g>`` / ``USING NAMED <g>`` before the ``WHERE`` of each INSERT/DELETE operation.

    Raises :class:`DatasetConflict` if the update already has ``USING`` or ``WITH``. A
    ``DELETE WHERE { P }`` shorthand (which takes no ``USING``) becomes ``DELETE { P } USING … WHERE { P }``.

    >>> with_using("DELETE WHERE { ?s <urn:p> ?o }", ["urn:g"])
    'DELETE { ?s <urn:p> ?o } USING <urn:g> WHERE { ?s <urn:p> ?o }'
    >>> with_using("INSERT { ?s a <urn:T> } WHERE { ?s ?p ?o }", ["urn:a"], ["urn:b"])
    'INSERT { ?s a <urn:T> } USING <urn:a> USING NAMED <urn:b> WHERE { ?s ?p ?o }'
    """
    clauses = " ".join([*(f"USING <{check_iri(g)}>" for g in default_graphs),
                        *(f"USING NAMED <{check_iri(g)}>" for g in named_graphs)])
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) of the original text
    previous: tuple[int, str] | None = None
    for start, end, word, depth in _tokens(update):
        if depth:
            previous = None
            continue
        if word in ("USING", "WITH"):
            raise DatasetConflict(f"the update has its own {word} clause; do not also send a dataset for it")
        if word == "WHERE":
            if previous is not None and previous[1] == "DELETE":  # DELETE WHERE { P } -> DELETE { P } USING ... WHERE { P }
                open_at = update.find("{", end)
                close_at = _group_end(update, open_at) if open_at >= 0 else -1
                if close_at < 0:
                    raise ValueError("DELETE WHERE without a { … } group")
                pattern = update[open_at:close_at]
                edits.append((previous[0], close_at, f"DELETE {pattern} {clauses} WHERE {pattern}"))
            else:
                edits.append((start, start, clauses + " "))
        previous = (start, word)
    out = update
    for start, end, replacement in sorted(edits, reverse=True):
        out = out[:start] + replacement + out[end:]
    return out


def _group_end(text: str, open_at: int) -> int:
    """Index just after the ``}`` closing the ``{`` at ``open_at`` (strings, IRIs and comments skipped), or -1."""
    depth = 0
    i, n = open_at, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            i = _skip_string(text, i)
            continue
        elif c == "<" and (end := _iri_end(text, i)) is not None:
            i = end
            continue
        i += 1
    return -1


__all__ = ["Dataset", "DatasetConflict", "has_where", "implicit_graphs", "names_dataset", "with_using"]

"""Registry store: one interface, backends chosen by URL (in the spirit of rdflib's store plugins).

====================  ==============================================================
URL                   backend
====================  ==============================================================
``oxigraph:DIR``      embedded Oxigraph (RocksDB) in directory DIR, via oxrdflib.
(a bare path)         same as ``oxigraph:PATH``.
``memory:``           Oxigraph in memory: tests and throw-away registries.
``rdflib-memory:``    rdflib's pure-Python default store: a baseline for benchmarks.
``sparql+http://H/P`` remote SPARQL 1.1 endpoint (Oxigraph server, Fuseki ...) through
``sparql+https://..`` rdflib's SPARQLUpdateStore; ``update_url`` if updates go elsewhere.
====================  ==============================================================

Every backend is an rdflib ``Dataset`` and the registry only speaks SPARQL
1.1 to it, so the same code runs embedded or against a server. Each device,
model or federation lives in its own named graph (named by the resource's
IRI): registering again *replaces* that graph with one ``DROP GRAPH ; INSERT
DATA`` update, which Oxigraph applies in one transaction, so a reader never
sees half of a description and a crash leaves the old or the new one.

Durability: an embedded Oxigraph write returns after RocksDB has appended it
to its write-ahead log, so an acknowledged write survives ``kill -9`` of the
process (tested); call :meth:`RegistryStore.flush` to also force it to disk
against power loss. One process owns an Oxigraph directory at a time (RocksDB
lock): a second opener gets :class:`StoreError`.

Queries run with a deadline and a result cap (see :meth:`RegistryStore.query`).
On embedded Oxigraph they go straight to pyoxigraph (same parser, prefixes
and substitutions as through oxrdflib) and answers are converted to rdflib
terms once per distinct term: a 10,000-row answer repeats the same few
literals and IRIs thousands of times.

Derived facts: every write also maintains the capability facts of
:mod:`ontology.derived` (``tf:hasSensorKind``, ``tf:hasCapability`` and the
shared ``tf:Capability`` nodes) that make matchmaking fast. ``put_graph``
derives them in the same transaction; raw updates and bulk loads are
followed by :meth:`RegistryStore.derive_all`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rdflib import Dataset, Graph, Literal, URIRef
from rdflib.query import Result
from rdflib.term import Identifier, Node

from ontology.derived import (
    DERIVATION_VERSION,
    DEVICE_PREDICATES,
    all_derived_nquads,
    prune_update,
    sensor_set,
    sensor_set_triples,
    task_kinds_in,
    with_derived,
)
from ontology.query_sandbox import FORK_GUARD
from ontology.sparql_protocol import Dataset as ProtocolDataset
from ontology.sparql_protocol import names_dataset
from ontology.store_terms import (  # re-exported: callers import them from here
    _IRI,
    XSD_INTEGER,
    QueryResult,
    QueryTimeout,
    StoreError,
    _Deadline,
    _query_error,
    _release,
    _Stop,
    _TermMemo,
    check_iri,
    from_oxigraph,
    materialise,
)
from ontology.vocab import CAPABILITY_GRAPH, ONTOLOGY_GRAPH, TF, bind_prefixes, load_ontology


#: Update text (bytes) an embedded on-disk store takes before it flushes its memtable: the write log a restart
#: after kill -9 must replay stays near 5 MB (an Oxigraph quad costs ~560 B of log against ~100 B of N-Triples).
FLUSH_AFTER_BYTES = 1 << 20


class RegistryStore:
    """Named graphs of registry descriptions over any rdflib Dataset backend."""

    def __init__(self, dataset: Dataset, url: str, *, persistent: bool, native: Any = None) -> None:
        self.dataset = dataset
        self.url = url
        self.persistent = persistent
        #: The pyoxigraph.Store under an Oxigraph backend. Updates go to it directly: through the rdflib
        #: Dataset (default_union) oxrdflib declines them and rdflib's pure-Python engine would replay an
        #: update as one store write per triple, slow and *not* atomic.
        self.native = native
        self._prefixes: dict[str, str] | None = None
        self._closed = False
        #: Serialises this process's writes: a put's look-up of stored shared nodes and its write are one step.
        self._write_lock = threading.RLock()
        #: Bytes of update text applied to an embedded on-disk store since its memtable was last flushed.
        self.unflushed_bytes = 0
        #: Bytes of update text applied in all (what each write costs the write log, give or take a factor).
        self.written_bytes = 0
        self.flushes = 0

    @property
    def local(self) -> bool:
        """Whether the data lives in this process (embedded Oxigraph, memory), not behind a remote endpoint."""
        return not self.url.startswith(("http://", "https://"))

    # -- writing -----------------------------------------------------------------

    def put_graph(self, name: str, graph: Graph) -> None:
        """Replace named graph ``name`` by ``graph`` atomically (register or re-register).

        The description and its derived facts are one update. If the graph describes tasks (now or
        before), the sensor sets of the shared requirement nodes of those tasks' models are then
        refreshed in a second, small update (:meth:`refresh_requirements`).
        """
        iri = check_iri(name)
        with self._write_lock:  # no prune between looking up the stored shared nodes and writing what links to them
            self._put_graph(iri, graph)

    def _put_graph(self, iri: URIRef, graph: Graph) -> None:
        old_tasks = self._tasks_in_graph(str(iri))
        # + the derived facts of its devices, models and tasks; shared nodes the store holds are not written again
        # (in this process only: another client of a remote store might prune between the look-up and the write)
        full, shared = with_derived(graph, self.task_kinds, self.stored_shared_nodes if self.local and self.native is not None else None)
        if len(shared):  # written by this design of the derived facts (see ensure_derived)
            shared.add((URIRef(CAPABILITY_GRAPH), TF.derivationVersion, Literal(DERIVATION_VERSION, datatype=XSD_INTEGER)))
        if self.url == "rdflib-memory:":
            # rdflib's pure-Python update parser needs ~50 s for the ~2,000 shared triples of a 10-sensor board;
            # in its own memory the same replace is a few Python calls (this baseline store is not durable anyway).
            self.dataset.remove_graph(iri)
            target = self.dataset.graph(iri)
            for triple in full:
                target.add(triple)
            capabilities = self.dataset.graph(URIRef(CAPABILITY_GRAPH))
            for triple in shared:
                capabilities.add(triple)
        else:
            body = full.serialize(format="nt")  # N-Triples is valid INSERT DATA syntax, escaping done by rdflib
            update = f"DROP SILENT GRAPH <{iri}> ;\nINSERT DATA {{ GRAPH <{iri}> {{\n{body}\n}} }}"
            if len(shared):  # content-addressed nodes: inserting an existing one changes nothing
                update += f" ;\nINSERT DATA {{ GRAPH <{CAPABILITY_GRAPH}> {{\n{shared.serialize(format='nt')}\n}} }}"
            self.update(update, derive=False)
        tasks = old_tasks | set(task_kinds_in(full))
        if tasks:
            self.refresh_requirements(tasks)

    def delete_graph(self, name: str) -> bool:
        """Remove named graph ``name``; False if there was nothing to remove."""
        iri = check_iri(name)
        with self._write_lock:
            existed = self.has_graph(name)
            tasks = self._tasks_in_graph(str(iri))
            self.update(f"DROP SILENT GRAPH <{iri}>", derive=False)  # the device's derived facts go with its graph
            if tasks:
                self.refresh_requirements(tasks)
        return existed

    def stored_shared_nodes(self, nodes: set[str]) -> set[str]:
        """Which of ``nodes`` (shared derived nodes: capability, lease, requirement, sensor set) the store holds."""
        iris = [check_iri(n) for n in sorted(nodes) if _IRI.match(n)]
        if not iris:
            return set()
        values = " ".join(i.n3() for i in iris)
        rows = self.query(f"SELECT DISTINCT ?n WHERE {{ VALUES ?n {{ {values} }} GRAPH <{CAPABILITY_GRAPH}> {{ ?n a ?type }} }}",
                          max_results=None, isolate=False, self_contained=True).rows
        return {str(n) for (n,) in rows}

    def _tasks_in_graph(self, name: str) -> set[str]:
        rows = self.query(
            f"SELECT DISTINCT ?g ?t WHERE {{ GRAPH ?g {{ ?t <{TF.requiresSensorSet}> ?s }} }}", {"g": URIRef(name)}, max_results=None
        ).rows
        return {str(t) for (_g, t) in rows if isinstance(t, URIRef)}

    def task_kinds(self, tasks: set[str]) -> dict[str, tuple[str, ...]]:
        """The sensor kinds each of ``tasks`` needs, as the store describes them now (any graph)."""
        iris = [check_iri(t) for t in sorted(tasks) if _IRI.match(t)]
        if not iris:
            return {}
        values = " ".join(i.n3() for i in iris)
        rows = self.query(
            f"SELECT ?t ?k WHERE {{ VALUES ?t {{ {values} }} ?t <{TF.requiresSensorType}> ?k }}", max_results=None
        ).rows
        out: dict[str, set[str]] = {str(i): set() for i in iris}
        for task, kind in rows:
            if isinstance(kind, URIRef):
                out[str(task)].add(str(kind))
        return {task: tuple(sorted(kinds)) for task, kinds in out.items()}

    def refresh_requirements(self, tasks: set[str]) -> None:
        """Recompute tf:requirementSensorSet of the requirement nodes that name any of ``tasks``.

        Why: a requirement node (ontology/derived.py) is shared by every model with the same runtimes and
        tasks, and its sensor set is the union of those tasks' tf:requiresSensorType, which live in the
        tasks' graphs. Changing or removing a task changes the sets of the few nodes that name it.
        """
        iris = [check_iri(t) for t in sorted(tasks) if _IRI.match(t)]
        if not iris:
            return
        values = " ".join(i.n3() for i in iris)
        rows = self.query(
            f"SELECT DISTINCT ?r ?t WHERE {{ VALUES ?changed {{ {values} }} GRAPH <{CAPABILITY_GRAPH}> {{"
            f" ?r <{TF.requirementTask}> ?changed ; <{TF.requirementTask}> ?t }} }}",
            max_results=None,
        ).rows
        if not rows:
            return
        req_tasks: dict[str, set[str]] = {}
        for req, task in rows:
            req_tasks.setdefault(str(req), set()).add(str(task))
        kinds = self.task_kinds({t for ts in req_tasks.values() for t in ts})
        shared = Graph()
        for req, ts in req_tasks.items():
            needed = sorted({k for t in ts for k in kinds.get(t, ())})
            shared.add((URIRef(req), TF.requirementSensorSet, URIRef(sensor_set(needed))))
            for triple in sensor_set_triples(needed):
                shared.add(triple)
        reqs = " ".join(URIRef(r).n3() for r in req_tasks)
        self.update(
            f"DELETE {{ GRAPH <{CAPABILITY_GRAPH}> {{ ?r <{TF.requirementSensorSet}> ?s }} }}"
            f" WHERE {{ VALUES ?r {{ {reqs} }} GRAPH <{CAPABILITY_GRAPH}> {{ ?r <{TF.requirementSensorSet}> ?s }} }} ;\n"
            f"INSERT DATA {{ GRAPH <{CAPABILITY_GRAPH}> {{\n{shared.serialize(format='nt')}\n}} }}",
            derive=False,
        )

    def update(self, sparql_update: str, *, derive: bool = True, base_iri: str | None = None) -> None:
        """Run a SPARQL 1.1 Update (already validated/escaped by the caller).

        A raw update may change any device, so by default the derived
        capability facts are then recomputed for the whole store
        (:meth:`derive_all`, seconds at 100,000 devices). The registry's own
        writes, which keep them up to date themselves, pass ``derive=False``.
        """
        with self._write_lock:
            self._update(sparql_update, base_iri)
            if derive:
                self.derive_all()

    def _update(self, sparql_update: str, base_iri: str | None = None) -> None:
        try:
            if self.native is not None:
                with self._write_lock, FORK_GUARD.shared():
                    self.native.update(sparql_update, base_iri=base_iri)  # one Oxigraph transaction
                self._wrote(len(sparql_update))
            else:
                self.dataset.update(sparql_update)
        except SyntaxError as exc:
            raise ValueError(f"invalid SPARQL update: {exc}") from None
        except OSError as exc:
            raise StoreError(f"write to {self.url} failed: {exc}") from exc
        except RuntimeError as exc:
            if self.native is not None and not isinstance(exc, StoreError):  # Oxigraph's evaluation errors: the update's fault
                raise ValueError(f"update failed: {exc}") from None
            raise
        except Exception as exc:  # rdflib's pyparsing errors share no base class with SyntaxError
            if "ParseException" in type(exc).__name__:
                raise ValueError(f"invalid SPARQL update: {exc}") from None
            raise

    def bulk_load_nquads(self, data: bytes) -> None:
        """Load N-Quads in bulk (benchmarks, restores): fast but *not* one transaction, unlike put_graph.

        Embedded Oxigraph uses its bulk loader; other backends parse through rdflib.
        """
        if self.native is not None:
            import pyoxigraph

            with FORK_GUARD.shared():
                self.native.bulk_load(data, pyoxigraph.RdfFormat.N_QUADS)
        else:
            self.dataset.parse(data=data, format="nquads")
        self.derive_all(bulk=True)

    # -- derived capability facts (ontology/derived.py) -----------------------------

    def derived_nquads(self) -> tuple[str, int]:
        """(N-Quads of the derived facts of every device and model in the store, number of devices) computed afresh."""
        return all_derived_nquads(lambda sparql: self.query(sparql, timeout_s=None, max_results=None).rows)

    def derive_all(self, *, bulk: bool = False) -> int:
        """Recompute the derived facts of every device (after raw updates or bulk loads); returns the device count.

        On embedded Oxigraph one transaction unless ``bulk`` (its bulk loader: faster, for loads of a whole fleet);
        elsewhere a drop then an add.
        """
        with self._write_lock:  # read and rewrite with no other write of this process in between
            nquads, count = self.derived_nquads()
            drop = "".join(f"DELETE WHERE {{ GRAPH ?g {{ ?s <{p}> ?o }} }} ;\n" for p in DEVICE_PREDICATES)
            drop += f"DROP SILENT GRAPH <{CAPABILITY_GRAPH}>"
            if self.native is not None and bulk:
                import pyoxigraph

                self._update(drop)
                with FORK_GUARD.shared():
                    self.native.bulk_load(nquads.encode(), pyoxigraph.RdfFormat.N_QUADS)
            elif self.native is not None:
                grouped: dict[str, list[str]] = {}
                for line in nquads.splitlines():
                    if line:
                        head, _, graph = line[:-2].rpartition(" ")
                        grouped.setdefault(graph, []).append(head + " .")
                inserts = "".join(f" ;\nINSERT DATA {{ GRAPH {g} {{\n" + "\n".join(body) + "\n}}" for g, body in grouped.items())
                self._update(drop + inserts)  # one Oxigraph transaction
            else:  # rdflib's update parser recurses on large INSERT DATA: drop, then add as a parse (not atomic)
                self._update(drop)
                if nquads.strip():
                    self.dataset.parse(data=nquads, format="nquads")
        return count

    def ensure_derived(self) -> bool:
        """Re-derive every device's, model's and task's facts if the store's were made by another design.

        A registry written before the current derived facts existed (no or another tf:derivationVersion
        in the capability graph) would answer the named queries wrongly; opening it fixes that once.
        Returns whether it re-derived.
        """
        current = self.query(
            f"ASK {{ GRAPH <{CAPABILITY_GRAPH}> {{ <{CAPABILITY_GRAPH}> <{TF.derivationVersion}> {DERIVATION_VERSION} }} }}",
            timeout_s=None,
        )
        if current.boolean:
            return False
        self.derive_all()
        return True

    def prune_capabilities(self) -> None:
        """Drop shared derived nodes nothing links to any more (after deletions and expiry purges).

        In order, one request: capabilities, leases and requirement nodes no description links to;
        offers no capability links to; resource profiles and sensor sets nothing else links to.
        """
        self._update(prune_update())

    def load_ontology(self) -> None:
        """(Re)load the TinyFleet ontology into its own named graph, so queries can use subclass axioms."""
        self.put_graph(ONTOLOGY_GRAPH, load_ontology())

    def flush(self) -> None:
        """Write the memtable to disk (embedded Oxigraph), so a restart has no write log to replay; a no-op elsewhere."""
        if self.native is not None:
            with self._write_lock, FORK_GUARD.shared():
                self.native.flush()
                self.unflushed_bytes = 0
                self.flushes += 1

    def _wrote(self, text_bytes: int) -> None:
        """Count an applied update; flush once :data:`FLUSH_AFTER_BYTES` of them have piled up.

        Why: RocksDB keeps every write in its write-ahead log until the memtable is flushed, and an
        opener after ``kill -9`` replays that log: 336 MB of it took 69 s here, the registry service's
        53-91 s restarts in the soak. Oxigraph never flushed on its own in our runs, and pyoxigraph
        exposes no RocksDB option for it, so the store bounds the log itself (a flush costs 0.1-0.2 s).
        """
        self.written_bytes += text_bytes
        if not self.persistent:
            return
        self.unflushed_bytes += text_bytes
        if self.unflushed_bytes >= FLUSH_AFTER_BYTES:
            self.flush()

    # -- reading -----------------------------------------------------------------

    def has_graph(self, name: str) -> bool:
        """Whether named graph ``name`` holds any triple."""
        result = self.query("ASK { GRAPH ?g { ?s ?p ?o } }", {"g": check_iri(name)})
        return bool(result.boolean)

    def get_graph(self, name: str) -> Graph:
        """A copy of named graph ``name`` (empty if absent)."""
        result = self.query(
            "CONSTRUCT { ?s ?p ?o } WHERE { GRAPH ?g { ?s ?p ?o } }", {"g": check_iri(name)}, max_results=None
        )
        return bind_prefixes(result.graph if result.graph is not None else Graph())

    def graph_names(self) -> list[str]:
        """Names of the non-empty named graphs, sorted."""
        result = self.query("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } } ORDER BY ?g", max_results=None)
        return [str(row[0]) for row in result.rows]

    def query(
        self,
        sparql: str,
        bindings: Mapping[str, Identifier] | None = None,
        *,
        timeout_s: float | None = 10.0,
        max_results: int | None = 10_000,
        isolate: bool = True,
        self_contained: bool = False,
        dataset: ProtocolDataset | None = None,
        base_iri: str | None = None,
    ) -> QueryResult:
        """Run a SPARQL query with pre-bound variables, a deadline and a cap on returned rows/triples.

        ``bindings`` are RDF terms (never text pasted into the query). With
        ``isolate`` (the default, for arbitrary SPARQL) the query runs on a
        daemon worker thread; at the deadline the caller gets QueryTimeout and
        the worker stops at its next solution (a query stuck inside one
        solution, e.g. a huge ORDER BY, keeps its thread until it finishes:
        the caller is never blocked, the CPU may be). Without ``isolate`` (the
        shipped named queries, whose plans are index lookups) it runs on the
        caller's thread and the deadline is checked between solutions: a
        thread start and two hand-overs cost more than a small named query
        itself on a loaded machine. Rows beyond ``max_results`` are not read
        and ``truncated`` is set. ``self_contained`` says the text declares
        every prefix it uses, so the store's own prefix table is not handed to
        the parser (the shipped named queries; a test checks they parse alone).
        ``dataset`` (SPARQL Protocol ``default-graph-uri``/``named-graph-uri``) replaces the union
        default graph with exactly the graphs named (embedded Oxigraph only); ``base_iri``
        resolves relative IRIs.
        """
        extra = {"dataset": dataset, "base_iri": base_iri}
        if not isolate:
            stop = _Deadline(timeout_s)
            try:
                result = self._run(sparql, bindings, max_results, stop, self_contained, **extra)
            except Exception as exc:
                raise _query_error(exc) from None
            if stop.passed:
                raise QueryTimeout(f"query exceeded its {timeout_s:g} s limit after {stop.elapsed():.2f} s")
            return result
        cancel = threading.Event()
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["result"] = self._run(sparql, bindings, max_results, cancel, self_contained, **extra)
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc

        worker = threading.Thread(target=run, name="registry-query", daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            cancel.set()
            raise QueryTimeout(f"query exceeded its {timeout_s:g} s limit after {time.monotonic() - started:.2f} s")
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, Exception):
                raise _query_error(exc) from None
            raise exc  # type: ignore[misc]
        return box["result"]  # type: ignore[return-value]

    def _run(
        self, sparql: str, bindings: Mapping[str, Identifier] | None, cap: int | None, cancel: _Stop, self_contained: bool = False,
        *, dataset: ProtocolDataset | None = None, base_iri: str | None = None,
    ) -> QueryResult:
        if self.native is not None:
            with FORK_GUARD.shared():  # the engine is never inside a call on another thread while a query worker forks
                return self._native_query(sparql, bindings, cap, cancel, self_contained, dataset=dataset, base_iri=base_iri)
        if dataset is not None and dataset.given:
            raise ValueError("default-graph-uri/named-graph-uri need the embedded Oxigraph backend; use FROM/GRAPH in the query")
        raw = self._raw_query(sparql, bindings)
        try:
            return materialise(raw, cap, cancel)
        finally:
            _release(raw)

    def _native_query(
        self, sparql: str, bindings: Mapping[str, Identifier] | None, cap: int | None, cancel: _Stop, self_contained: bool = False,
        *, dataset: ProtocolDataset | None = None, base_iri: str | None = None,
    ) -> QueryResult:
        """Embedded Oxigraph without the rdflib layer: what oxrdflib does, minus per-cell conversions."""
        import pyoxigraph as ox
        from oxrdflib._converter import to_ox

        if self._prefixes is None:  # the dataset's bindings, as rdflib would pass them through oxrdflib
            self._prefixes = {prefix: str(ns) for prefix, ns in self.dataset.namespaces()}
        graphs: dict[str, Any] = {"use_default_graph_as_union": True}
        if names_dataset(sparql):  # FROM / FROM NAMED: exactly those graphs (Oxigraph's union flag would override them)
            graphs = {}
        if dataset is not None and dataset.given:  # exactly the graphs named (a FROM in the text is overridden)
            graphs = {"default_graph": [ox.NamedNode(g) for g in dataset.default_graphs or ()],
                      "named_graphs": [ox.NamedNode(g) for g in dataset.named_graphs or ()]}
        result = self.native.query(
            sparql,
            **graphs,
            base_iri=base_iri,
            prefixes=None if self_contained else self._prefixes,
            substitutions={ox.Variable(k): _substitution(v, to_ox) for k, v in (bindings or {}).items()},
        )
        if isinstance(result, ox.QueryBoolean):
            return QueryResult(kind="ASK", boolean=bool(result))
        term = _TermMemo().__getitem__  # C-level lookup per cell; a miss converts once (a 10,000-row answer repeats terms)

        truncated = False
        if isinstance(result, ox.QueryTriples):
            graph = bind_prefixes(Graph())
            count = 0
            for triple in result:
                if cancel.is_set():
                    break
                if cap is not None and count >= cap:
                    truncated = True
                    break
                graph.add((term(triple.subject), term(triple.predicate), term(triple.object)))
                count = len(graph)
            return QueryResult(kind="CONSTRUCT", graph=graph, truncated=truncated)
        variables = [v.value for v in result.variables]
        rows: list[tuple[Node | None, ...]] = []
        append, count = rows.append, 0
        for solution in result:
            if not count & 63 and cancel.is_set():  # every 64 rows: a clock read per row costs as much as the row
                break
            if cap is not None and count >= cap:
                truncated = True
                break
            append(tuple(map(term, solution)))
            count += 1
        del result  # the solution iterator dies on the thread that made it
        return QueryResult(kind="SELECT", variables=variables, rows=rows, truncated=truncated)

    def _raw_query(self, sparql: str, bindings: Mapping[str, Identifier] | None) -> Result:
        return self.dataset.query(sparql, initBindings=dict(bindings or {}))


    def close(self) -> None:
        """Release the backend (the RocksDB lock of an embedded store), flushed first so the next open replays nothing."""
        if not self._closed:
            if self.native is not None and self.persistent and self.unflushed_bytes:
                with contextlib.suppress(OSError):
                    self.flush()
            self._closed = True
            self.native = None  # the last reference to the pyoxigraph Store: dropping it releases the RocksDB lock
            self.dataset.close()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _substitution(term: Identifier, to_ox: Callable[[Identifier], Any]) -> Any:
    """A bound value as a pyoxigraph term; an IRI stays an IRI (oxrdflib maps rdflib's
    ``urn:x-rdflib:default`` to the default graph, which no variable can hold: found by bench/fuzz.py)."""
    if isinstance(term, URIRef):
        import pyoxigraph as ox

        return ox.NamedNode(str(term))
    return to_ox(term)


# -- backends (ontology/store_backends.py; re-exported: callers open stores from here) ----------

from ontology.store_backends import BACKENDS, is_oxigraph_dir, open_store  # noqa: E402

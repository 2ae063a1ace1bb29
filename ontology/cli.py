"""``tinyfleet registry ...``: describe, validate, register and query, or serve the registry over HTTP.

Every command that touches data takes ``--store`` (or ``TINYFLEET_REGISTRY``):
an Oxigraph directory (default ``runs/registry``), ``memory:``, or a remote
``sparql+http://...`` endpoint (see :func:`ontology.store.open_store`). An
embedded store is locked by the process that has it open, so while ``serve``
runs on a directory, other commands must use the HTTP API instead.

Refusals (malformed file, SHACL violations, bad parameters) print what to fix
on stderr and exit with status 1; nothing is written then.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ontology.directory import Directory, ThingRejected, check_td
from ontology.named_queries import QueryParamError, named_queries, parse_param_args, run_named_query
from ontology.rdf_input import InvalidRDF, format_for, parse_json_document, parse_rdf
from ontology.remote_store import TOKEN_ENV
from ontology.sparql_results import JSON_LD, RDF_XML, SPARQL_CSV, SPARQL_JSON, SPARQL_TSV, SPARQL_XML, TURTLE, serialize
from ontology.store import QueryResult, RegistryStore, StoreError, open_store
from ontology.tflite_facts import ModelReadError
from ontology.validation import DescriptionRejected, check_description
from ontology.vocab import TF, bind_prefixes

DEFAULT_STORE = "runs/registry"
STORE_ENV = "TINYFLEET_REGISTRY"
#: Classes whose single instance names the graph a file is registered in.
MAIN_CLASSES = (TF.Device, TF.Model, TF.Federation, TF.ModelVersion, TF.Task)

app = typer.Typer(help="Semantic registry: describe devices and models in RDF, validate, store and query them.",
                  no_args_is_help=True)
out = Console(soft_wrap=True, emoji=False)  # IRIs like urn:x:foo print as written
err = Console(stderr=True, soft_wrap=True, emoji=False)

StoreOption = typer.Option(DEFAULT_STORE, "--store", envvar=STORE_ENV,
                           help="Registry location: an Oxigraph directory, memory:, or sparql+http://host/path.")


class Refused(Exception):
    """Input the registry will not take; the message says why."""


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(1)


@contextmanager
def _refusals() -> Iterator[None]:
    """Turn every expected refusal into a readable message and exit status 1."""
    try:
        yield
    except DescriptionRejected as exc:
        raise _fail(f"{len(exc.violations)} problem(s):\n" + "\n".join(f"  - {v}" for v in exc.violations)) from None
    except ThingRejected as exc:
        raise _fail(str(exc)) from None
    except (InvalidRDF, ModelReadError, QueryParamError, Refused, StoreError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _opened(store_url: str, *, create: bool) -> Iterator[RegistryStore]:
    """The store at ``store_url``; a directory that is not a store yet is created only if ``create``."""
    with _refusals():
        store = open_store(store_url, create=create)
    try:
        yield store
    finally:
        store.close()


# -- describing and validating ---------------------------------------------------------


@app.command("describe-model")
def describe_model(
    file: Path = typer.Argument(..., help="A .tflite flatbuffer."),
    fmt: str = typer.Option("turtle", "--format", help="turtle or json-ld."),
    runtime: str = typer.Option("tflite-micro", help="Runtime the model is built for: tflite-micro or litert."),
    task: str = typer.Option(None, help="IRI of the task the model solves."),
    train_last_dense: bool = typer.Option(False, help="Describe TinyOL training of the last dense layer (and its RAM)."),
) -> None:
    """Print the RDF of a .tflite model: layers, parameters, MACs, flash size, tensor-arena estimate."""
    from ontology.describe_model import describe_model_file

    if fmt not in ("turtle", "json-ld"):
        raise _fail(f"--format must be turtle or json-ld, not {fmt!r}")
    with _refusals():
        _iri, graph = describe_model_file(file, runtime=runtime, task=task, train_last_dense=train_last_dense)
    out.print(graph.serialize(format=fmt), end="", markup=False, highlight=False)


def _read_description(file: Path, *, check: bool = True) -> tuple[Graph, dict[str, Any] | None]:
    """(RDF, the TD document if the file is a TD) of a description file; a TD is always checked, other RDF if ``check``."""
    text = file.read_text(encoding="utf-8")
    fmt = format_for(file.name)
    if fmt == "json-ld":
        document = parse_json_document(text)
        if _looks_like_td(document):
            return check_td(document), document
    graph = parse_rdf(text, fmt)
    return (check_description(graph) if check else graph), None


def _known_types(store: RegistryStore, graph: Graph) -> Graph:
    """The store's ``rdf:type`` facts about the IRIs ``graph`` points to but does not describe."""
    described = set(graph.subjects())
    targets = sorted({o for o in graph.objects() if isinstance(o, URIRef) and o not in described and not str(o).startswith(str(TF))})
    context = Graph()
    if not targets:
        return context
    values = " ".join(t.n3() for t in targets[:500])
    rows = store.query(f"SELECT DISTINCT ?s ?t WHERE {{ VALUES ?s {{ {values} }} ?s a ?t }}", max_results=None).rows
    for subject, kind in rows:
        context.add((subject, RDF.type, kind))
    return context


def _looks_like_td(document: Any) -> bool:
    """A TD context, or TD members without one (then check_td says the @context is missing, as the HTTP API does)."""
    if not isinstance(document, dict):
        return False
    context = document.get("@context")
    first = context[0] if isinstance(context, list) and context else context
    if isinstance(first, str) and "/wot/td/" in first:
        return True
    types = document.get("@type")
    typed_thing = "Thing" in (types if isinstance(types, list) else [types])
    return typed_thing or ("title" in document and any(k in document for k in ("securityDefinitions", "security", "properties", "actions", "events")))


@app.command()
def validate(file: Path = typer.Argument(..., help="A device or model description: TD JSON-LD (.json/.jsonld) or Turtle (.ttl).")) -> None:
    """Check a description against the SHACL shapes; list every problem if it fails."""
    with _refusals():
        graph, _td = _read_description(file)
    out.print(f"[green]ok[/] {escape(str(file))}: {len(graph)} statements conform to the TinyFleet shapes", highlight=False)


# -- registering -----------------------------------------------------------------------


def _graph_name(graph: Graph) -> str:
    """The IRI of the one main resource a file describes (its graph name)."""
    mains = sorted({str(s) for cls in MAIN_CLASSES for s in graph.subjects(RDF.type, cls) if isinstance(s, URIRef)})
    if len(mains) != 1:
        found = ", ".join(mains) if mains else "none"
        raise Refused(f"cannot name the graph: the file describes {len(mains)} main resources ({found}); pass --graph IRI")
    return mains[0]


@app.command()
def add(
    file: Path = typer.Argument(..., help="TD JSON-LD, Turtle, or a .tflite model (described first)."),
    store_url: str = StoreOption,
    graph: str = typer.Option(None, "--graph", help="Named graph for a Turtle/JSON-LD file describing several resources."),
    runtime: str = typer.Option("tflite-micro", help="For .tflite: runtime the model is built for."),
    task: str = typer.Option(None, help="For .tflite: IRI of the model's task."),
    train_last_dense: bool = typer.Option(False, help="For .tflite: describe TinyOL training of the last dense layer."),
) -> None:
    """Validate a description and register it (replacing an earlier registration of the same resource)."""
    with _refusals():
        td: dict[str, Any] | None = None
        if file.suffix.lower() == ".tflite":
            from ontology.describe_model import describe_model_file

            iri, rdf = describe_model_file(file, runtime=runtime, task=task, train_last_dense=train_last_dense)
            name = str(iri)
        else:
            rdf, td = _read_description(file, check=False)
            name = graph or (td.get("id") if td else None) or _graph_name(rdf)
    with _opened(store_url, create=True) as store, _refusals():  # registering creates the store
        if td is None:  # checked against what the store already knows (a --task registered before is a tf:Task)
            check_description(rdf, _known_types(store, rdf))
        if td is not None:
            directory = Directory(store)
            if "id" in td:
                directory.put(name, td)
            else:
                name = directory.create_anonymous(td)
        else:
            store.put_graph(name, rdf)
        store.flush()
    out.print(f"[green]registered[/] {escape(name)} ({len(rdf)} statements) in {escape(store_url)}", highlight=False)


@app.command("add-firmware")
def add_firmware(
    report: Path = typer.Argument(..., help="The size report `tinyfleet firmware build` wrote (<task>_firmware.size.json)."),
    device: str = typer.Option(..., "--device", help="The device that runs the image: its id (sine-3) or IRI."),
    model: str = typer.Option(None, "--model", help="IRI of the model the image carries (its measured sizes then decide matchmaking)."),
    store_url: str = StoreOption,
) -> None:
    """Record a firmware image's measured flash and RAM as the device's firmware facts (replacing earlier ones)."""
    from ontology.firmware_facts import read_report, record_firmware

    with _refusals():
        data = read_report(report)
    with _opened(store_url, create=True) as store, _refusals():
        facts = record_firmware(store, data, device, model)
        registered = store.has_graph(facts.device)
        store.flush()
    out.print(f"[green]recorded[/] {escape(facts.image)}: {facts.board}, flash {facts.flash_bytes:,} B, RAM {facts.ram_bytes:,} B"
              f"{'' if registered else ' (the device has no TD registered yet; the facts wait for it)'}", highlight=False)


# -- querying --------------------------------------------------------------------------


def _cell(term: Any, graph: Graph) -> str:
    if term is None:
        return ""
    if isinstance(term, URIRef):
        compact = graph.namespace_manager.normalizeUri(term)
        return str(term) if compact.startswith("<") else compact
    if isinstance(term, Literal):
        return str(term)
    return term.n3()


def _print_result(result: QueryResult, fmt: str) -> None:
    if result.kind == "CONSTRUCT":
        media = {"table": TURTLE, "json": JSON_LD, "xml": RDF_XML}.get(fmt)
        if media is None:
            raise _fail(f"CONSTRUCT/DESCRIBE results have no {fmt.upper()} form; use --format table (Turtle), json (JSON-LD) or xml")
        out.print(serialize(result, media).decode(), end="", markup=False, highlight=False)
    elif fmt == "json":
        out.print(serialize(result, SPARQL_JSON).decode(), markup=False, highlight=False)
    elif fmt == "csv" and result.kind == "SELECT":
        sys.stdout.write(serialize(result, SPARQL_CSV).decode())
    elif fmt == "tsv" and result.kind == "SELECT":
        sys.stdout.write(serialize(result, SPARQL_TSV).decode())
    elif fmt == "xml":
        sys.stdout.write(serialize(result, SPARQL_XML).decode())
    elif result.kind == "ASK":
        out.print("true" if result.boolean else "false")
    else:
        names = bind_prefixes(Graph())
        table = Table(show_lines=False)
        for name in result.variables:
            table.add_column(name, overflow="fold")
        for row in result.rows:
            table.add_row(*(escape(_cell(value, names)) for value in row))
        out.print(table)
        out.print(f"{len(result.rows)} row(s)" + (" [yellow](truncated)[/]" if result.truncated else ""), highlight=False)
    if result.truncated and fmt != "table":
        err.print(f"[yellow]warning:[/] result truncated at {len(result.rows) or len(result.graph or ())} rows/triples")


@app.command()
def query(
    sparql: str = typer.Argument(None, help="A SPARQL query (omit with --named)."),
    named: str = typer.Option(None, "--named", help="Run a shipped named query (see list-queries)."),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE for a named query; repeat for several."),
    fmt: str = typer.Option("table", "--format", help="table, json (SPARQL JSON / JSON-LD), xml (SPARQL XML / RDF/XML), csv or tsv."),
    store_url: str = StoreOption,
    timeout: float = typer.Option(30.0, help="Give up after this many seconds."),
    limit: int = typer.Option(10_000, help="Return at most this many rows/triples."),
    create: bool = typer.Option(False, "--create", help="Create the store if the directory is not one yet (else refused)."),
) -> None:
    """Run raw SPARQL or a named query with safely bound parameters."""
    if fmt not in ("table", "json", "xml", "csv", "tsv"):
        raise _fail(f"--format must be table, json, xml, csv or tsv, not {fmt!r}")
    if (sparql is None) == (named is None):
        raise _fail("give either a SPARQL query or --named NAME (not both)")
    if param and named is None:
        raise _fail("--param only applies to --named queries")
    with _opened(store_url, create=create) as store, _refusals():
        if named is not None:
            result = run_named_query(store, named, parse_param_args(param), timeout_s=timeout, max_results=limit)
        else:
            result = store.query(sparql, timeout_s=timeout, max_results=limit)
    _print_result(result, fmt)


@app.command("list-queries")
def list_queries() -> None:
    """Show the shipped named queries and their parameters."""
    table = Table("name", "parameters", "summary", show_lines=True)
    for q in named_queries().values():
        params = "\n".join(f"{p.name} ({p.kind}): {p.doc}" for p in q.params)
        table.add_row(escape(q.name), escape(params), escape(q.summary))
    out.print(table)


# -- serving ---------------------------------------------------------------------------


@app.command()
def serve(
    store_url: str = StoreOption,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8787, help="TCP port."),
    token: str = typer.Option(None, envvar=TOKEN_ENV, help="Bearer token for writes; a random one is printed if absent."),
    query_timeout: float = typer.Option(10.0, help="Seconds a query may run."),
    max_results: int = typer.Option(10_000, help="Most rows/triples a query returns."),
    purge_interval: float = typer.Option(60.0, help="Seconds between purges of expired registrations."),
    query_memory_mb: int = typer.Option(None, help="MB of memory one /sparql query's worker may add (default: a quarter of RAM)."),
    write_timeout: float = typer.Option(30.0, help="Seconds before a write answers 503 (the atomic write may still land)."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve the SPARQL endpoint and the WoT Things API over HTTP."""
    import uvicorn

    from ontology.service import create_app

    if token is None:
        token = secrets.token_urlsafe(24)
        err.print(f"write token (pass as 'Authorization: Bearer ...'): {token}", highlight=False, markup=False)
    with _opened(store_url, create=True) as store:  # serving a new path starts an empty registry there
        application = create_app(store, token, query_timeout, max_results, purge_interval_s=purge_interval,
                                 query_memory_bytes=None if query_memory_mb is None else query_memory_mb << 20,
                                 write_timeout_s=write_timeout)
        # Listening before the line is printed: whoever waits for it (a script, a test) may connect at once;
        # connections queue until uvicorn accepts them.
        listener = _listen(host, port)
        err.print(f"registry {store_url} on http://{host}:{port} (/sparql, /things, /search/sparql, /queries)", highlight=False)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the previous handler;
        # make that handler a normal exit so the store is closed (RocksDB flushed and unlocked) on the way out.
        signal.signal(signal.SIGTERM, _exit_quietly)
        uvicorn.Server(uvicorn.Config(application, log_level=log_level)).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a clear error (a port in use is a user's mistake, not a trace)."""
    try:
        return socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        err.print(f"error: cannot listen on {host}:{port}: {exc.strerror}", highlight=False, markup=False)
        raise typer.Exit(2) from None


def _exit_quietly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    """Entry point for ``python -m ontology.cli`` (tests run the service as a child process this way)."""
    app(prog_name=os.environ.get("TINYFLEET_PROG", "tinyfleet registry"))


if __name__ == "__main__":
    main()


__all__ = ["app", "main"]

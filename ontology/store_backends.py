"""Registry backends by URL: embedded Oxigraph, memory, rdflib's store, a remote SPARQL endpoint.

Why a module of its own: opening a store is a job apart from keeping named graphs in one
(:mod:`ontology.store`, which re-exports :func:`open_store`): which URL names which backend,
what counts as an existing store, and when a new one may be created (never silently: a
mistyped directory is refused unless the caller creates stores).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typing import TYPE_CHECKING

from rdflib import Dataset

from ontology.store_terms import StoreError
from ontology.vocab import ONTOLOGY_GRAPH

if TYPE_CHECKING:  # ontology.store imports this module at its end, so RegistryStore is imported where used
    from ontology.store import RegistryStore


def is_oxigraph_dir(path: Path) -> bool:
    """Whether ``path`` holds an Oxigraph (RocksDB) store: its ``CURRENT`` and ``IDENTITY`` files."""
    return (path / "CURRENT").is_file() and (path / "IDENTITY").is_file()


def _oxigraph(location: str, *, create: bool = True) -> RegistryStore:
    import pyoxigraph
    from oxrdflib import OxigraphStore

    from ontology.store import RegistryStore

    if location:
        path = Path(location)
        if path.exists() and not path.is_dir():
            raise StoreError(f"registry location {location} exists and is not a directory")
        existing = is_oxigraph_dir(path)
        if not existing and path.is_dir() and any(path.iterdir()):
            some = ", ".join(sorted(p.name for p in path.iterdir())[:3])
            raise StoreError(f"{location} is not a registry store: the directory holds other files ({some}, ...); "
                             "point --store at a registry, or at a new or empty directory to create one")
        if not existing and not create:
            raise StoreError(f"no registry store at {location} (a typo?); `registry add` and `registry serve` create one, "
                             "as does --create")
        try:
            inner = pyoxigraph.Store(str(path))
        except OSError as exc:
            raise StoreError(f"cannot open Oxigraph store in {location}: {exc} (is another process using it?)") from exc
    else:
        inner = pyoxigraph.Store()
    dataset = Dataset(store=OxigraphStore(store=inner), default_union=True)
    return RegistryStore(dataset, f"oxigraph:{location}" if location else "memory:", persistent=bool(location), native=inner)


def _rdflib_memory(_location: str) -> RegistryStore:
    from ontology.store import RegistryStore

    return RegistryStore(Dataset(default_union=True), "rdflib-memory:", persistent=False)


def _sparql_endpoint(location: str, update_url: str | None = None, token: str | None = None) -> RegistryStore:
    """A remote SPARQL 1.1 endpoint (:mod:`ontology.remote_store`); the token defaults to ``$TINYFLEET_REGISTRY_TOKEN``."""
    import os

    from ontology.remote_store import TOKEN_ENV, RemoteSparqlStore
    from ontology.store import RegistryStore

    store = RemoteSparqlStore(location, update_url, token=token if token is not None else os.environ.get(TOKEN_ENV))
    dataset = Dataset(store=store, default_union=True)
    return RegistryStore(dataset, location, persistent=True)


BACKENDS: dict[str, Callable[..., RegistryStore]] = {
    "oxigraph": _oxigraph,
    "memory": lambda _loc, **_: _oxigraph(""),
    "rdflib-memory": lambda loc, **_: _rdflib_memory(loc),
}


def open_store(url: str, *, update_url: str | None = None, load_ontology: bool = True, token: str | None = None,
               create: bool = True) -> RegistryStore:
    """Open the registry at ``url`` (see the module table); the ontology graph is (re)loaded unless told not to.

    A store whose derived facts predate the current design is re-derived here (:meth:`RegistryStore.ensure_derived`).
    A remote store is written only where needed: its ontology graph is loaded if missing (or if a token is
    at hand to refresh it), so read-only use needs no token. An Oxigraph directory that does not exist yet
    is created only with ``create``; a non-empty directory that is not a store is always refused.
    """
    if url.startswith(("sparql+http://", "sparql+https://")):
        store = _sparql_endpoint(url[len("sparql+") :], update_url, token)
        if load_ontology and not getattr(store.dataset.store, "token", None) and store.has_graph(ONTOLOGY_GRAPH):
            load_ontology = False  # read-only client of a store that has it
    else:
        scheme, sep, rest = url.partition(":")
        if sep and scheme in BACKENDS:
            store = BACKENDS[scheme](rest, create=create)
        elif "://" in url:
            raise StoreError(f"unknown registry URL {url!r}; use oxigraph:DIR, memory:, rdflib-memory: or sparql+http(s)://...")
        else:
            store = _oxigraph(url, create=create)
    if load_ontology:
        store.load_ontology()
    store.ensure_derived()
    return store

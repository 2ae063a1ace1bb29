"""Child process for the kill -9 test: registers graphs forever, printing each acknowledged id."""

from __future__ import annotations

import sys

from rdflib import Graph, Literal, URIRef

from ontology.store import open_store

if __name__ == "__main__":
    store = open_store(sys.argv[1], load_ontology=False)
    i = 0
    while True:
        g = Graph()
        for j in range(50):
            g.add((URIRef(f"urn:dev:{i}"), URIRef(f"urn:p:{j}"), Literal(i * 1000 + j)))
        store.put_graph(f"urn:graph:{i}", g)
        print(i, flush=True)  # acknowledged: put_graph returned
        i += 1

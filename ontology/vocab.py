"""Namespaces and packaged files of the TinyFleet ontology, in one place.

Every module that writes or reads registry RDF imports its namespaces from
here. ``TF["anything"]`` never fails in rdflib, so the ontology consistency
test scans the code, shapes and queries for tf: terms and checks each one is
declared in ``tinyfleet.ttl``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rdflib import Graph, Namespace
from rdflib.namespace import OWL, PROV, RDF, RDFS, XSD

from edge.identity import RESOURCE_BASE  # noqa: F401  (re-exported)
from edge.thing_description import RUNTIMES, SENSOR_CLASSES, TF_NAMESPACE, sensor_class  # noqa: F401  (re-exported)

PACKAGE_DIR = Path(__file__).resolve().parent
ONTOLOGY_FILE = PACKAGE_DIR / "tinyfleet.ttl"
SHAPES_FILE = PACKAGE_DIR / "shapes.ttl"
QUERIES_DIR = PACKAGE_DIR / "queries"
CONTEXTS_DIR = PACKAGE_DIR / "contexts"

TF = Namespace(TF_NAMESPACE)
TD = Namespace("https://www.w3.org/2019/wot/td#")
SOSA = Namespace("http://www.w3.org/ns/sosa/")
SSN = Namespace("http://www.w3.org/ns/ssn/")
SSN_SYSTEM = Namespace("http://www.w3.org/ns/ssn/systems/")
S3N = Namespace("http://w3id.org/s3n/")
SCHEMA = Namespace("https://schema.org/")
QUDT = Namespace("http://qudt.org/schema/qudt/")
UNIT = Namespace("http://qudt.org/vocab/unit/")

#: Where registry resources are minted (devices, models, rounds ...): ``RESOURCE_BASE``, from edge.identity.
#: Named graph that holds the ontology itself inside a registry store.
ONTOLOGY_GRAPH = "https://w3id.org/tinyfleet/graph/ontology"
#: Named graph of the shared, derived tf:Capability nodes (see ontology/derived.py).
CAPABILITY_GRAPH = "https://w3id.org/tinyfleet/graph/capabilities"

PREFIXES: dict[str, Namespace] = {
    "tf": TF,
    "td": TD,
    "sosa": SOSA,
    "ssn": SSN,
    "ssn-system": SSN_SYSTEM,
    "s3n": S3N,
    "schema": SCHEMA,
    "prov": PROV,
    "qudt": QUDT,
    "unit": UNIT,
    "rdf": Namespace(str(RDF)),
    "rdfs": Namespace(str(RDFS)),
    "owl": Namespace(str(OWL)),
    "xsd": Namespace(str(XSD)),
}


def bind_prefixes(graph: Graph) -> Graph:
    """Bind the TinyFleet prefixes so serialised output is readable."""
    for prefix, namespace in PREFIXES.items():
        graph.bind(prefix, namespace, override=True)
    return graph


@lru_cache(maxsize=1)
def _ontology_turtle() -> str:
    return ONTOLOGY_FILE.read_text(encoding="utf-8")


def load_ontology() -> Graph:
    """A fresh Graph with the ontology (parsed each call so callers may mutate it)."""
    return Graph().parse(data=_ontology_turtle(), format="turtle")

"""Semantic registry of devices and models (RDF, SHACL, SPARQL)."""

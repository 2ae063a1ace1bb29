"""How a federation uses the semantic registry: device selection by SPARQL, model versions with provenance."""

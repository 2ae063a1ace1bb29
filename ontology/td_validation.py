"""A TD checked at the door: the W3C TD 1.1 JSON Schema, the rules it cannot express, and TinyFleet's closed vocabulary.

Why: SHACL sees only the RDF a TD becomes, and JSON-LD drops what it does not understand, so
``op: ["invokeAction"]``, an empty ``forms``, a ``security`` naming no scheme or a sensor
predicate spelt ``hasSensr`` all became 204s (issue 16: 4 of the Thingweb playground's 23
invalid TDs were refused). Here, on the JSON itself, every problem is listed, each with where it is:

* :func:`schema_problems`: the TD 1.1 Recommendation's JSON Schema (``schemas/``, draft-07,
  run with ``jsonschema``);
* :func:`rule_problems`: TD 1.1 assertions a JSON Schema cannot state: every name in a
  ``security`` (of the Thing or of a form) and in a ``combo`` scheme's ``oneOf``/``allOf`` is a
  ``securityDefinitions`` entry (td-security-binding, td-security-combo-*), at most one
  link has ``rel: "type"`` (td-link-type-rel), and a data schema's ``enum``/``const`` values
  are of its own ``type`` (else no value could ever be valid);
* :func:`unknown_terms`: every ``https://w3id.org/tinyfleet#`` IRI in the RDF must be a term the
  ontology defines, else "unknown TinyFleet term ... (did you mean tf:hasSensor?)".

Duplicate JSON member names are refused earlier, by :func:`ontology.rdf_input.parse_json_document`.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from typing import Any

from rdflib import Graph, URIRef

from ontology.vocab import PACKAGE_DIR, TF, load_ontology

SCHEMA_FILE = PACKAGE_DIR / "schemas" / "td-json-schema-validation.json"
#: TD 1.1 § 5.3.3 security schemes (an extension would declare its own vocabulary).
SECURITY_SCHEMES = ("nosec", "auto", "combo", "basic", "digest", "apikey", "bearer", "psk", "oauth2")
_TF = str(TF)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the TD)"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message(error: Any) -> str:
    """One readable line for a jsonschema error, descending into oneOf/anyOf to the most telling cause."""
    from jsonschema.exceptions import best_match

    scheme = error.instance.get("scheme") if isinstance(error.instance, dict) else None
    if error.context and isinstance(scheme, str) and scheme not in SECURITY_SCHEMES and "securityDefinitions" in error.absolute_path:
        return f"{_where(error.absolute_path)}: unknown security scheme {scheme!r}; TD 1.1 defines {', '.join(SECURITY_SCHEMES)}"
    while error.context:  # a oneOf/anyOf: the branch that fits the value's type says more than "not valid under any"
        fitting = [e for e in error.context if e.validator != "type"] or list(error.context)
        deepest = best_match(sorted(fitting, key=lambda e: -len(e.absolute_path)))
        if deepest is None:
            break
        error = deepest
    if error.validator in ("enum", "const"):
        allowed = error.validator_value if error.validator == "enum" else [error.validator_value]
        return f"{_where(error.absolute_path)}: {_short(error.instance)} is not one of {_short(allowed, 200)}"
    if error.validator == "required":
        return f"{_where(error.absolute_path)}: {error.message}"
    if error.validator in ("minItems", "minProperties"):
        return f"{_where(error.absolute_path)}: must not be empty ({error.message.split(' is ')[-1] if ' is ' in error.message else error.message})"
    if error.validator == "uniqueItems":
        return f"{_where(error.absolute_path)}: has repeated items {_short(error.instance)}"
    message = error.message
    if len(message) > 240:
        message = message[:239] + "…"
    return f"{_where(error.absolute_path)}: {message}"


def schema_problems(td: Any) -> list[str]:
    """Every violation of the TD 1.1 JSON Schema, one line each with its JSON path (empty: conforms)."""
    errors = sorted(_validator().iter_errors(td), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    out: list[str] = []
    for error in errors:
        line = "TD 1.1 schema: " + _message(error)
        if line not in out:
            out.append(line)
    return out


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _forms(td: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, form) of the Thing's forms and every affordance's."""
    out: list[tuple[str, dict[str, Any]]] = []
    top = td.get("forms")
    for i, form in enumerate(top if isinstance(top, list) else []):
        if isinstance(form, dict):
            out.append((f"forms[{i}]", form))
    for kind in ("properties", "actions", "events"):
        affordances = td.get(kind)
        if not isinstance(affordances, dict):
            continue
        for name, affordance in affordances.items():
            forms = affordance.get("forms") if isinstance(affordance, dict) else None
            for i, form in enumerate(forms if isinstance(forms, list) else []):
                if isinstance(form, dict):
                    out.append((f"{kind}.{name}.forms[{i}]", form))
    return out


def rule_problems(td: Any) -> list[str]:
    """TD 1.1 rules beyond the schema: security names resolve, at most one ``rel: "type"`` link."""
    if not isinstance(td, dict):
        return []
    problems: list[str] = []
    definitions = td.get("securityDefinitions")
    known = set(definitions) if isinstance(definitions, dict) else set()

    def check(names: list[str], where: str) -> None:
        for name in names:
            if name not in known:
                hint = difflib.get_close_matches(name, sorted(known), n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (defined: {', '.join(sorted(known)) or 'none'})"
                problems.append(f"{where}: security scheme {name!r} is not in securityDefinitions{suggestion}")

    check(_names(td.get("security")), "security")
    for path, form in _forms(td):
        check(_names(form.get("security")), f"{path}.security")
    for name, scheme in (definitions.items() if isinstance(definitions, dict) else ()):
        if isinstance(scheme, dict) and scheme.get("scheme") == "combo":
            for key in ("oneOf", "allOf"):
                members = _names(scheme.get(key))
                check(members, f"securityDefinitions.{name}.{key}")
                if name in members:
                    problems.append(f"securityDefinitions.{name}.{key}: a combo scheme cannot contain itself")
    problems += _enum_type_problems(td)
    links = td.get("links")
    if isinstance(links, list):
        typed = [i for i, link in enumerate(links) if isinstance(link, dict) and link.get("rel") == "type"]
        if len(typed) > 1:
            problems.append(f"links: at most one link may have rel \"type\" (links {', '.join(f'[{i}]' for i in typed)} do)")
    return problems


_JSON_TYPES: dict[str, Any] = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _enum_type_problems(td: dict[str, Any]) -> list[str]:
    """A data schema whose ``enum``/``const`` values contradict its own ``type`` (no value could ever be valid)."""
    problems: list[str] = []
    stack: list[tuple[Any, str]] = [(td, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if isinstance(kind, str) and kind in _JSON_TYPES:
            values = list(node["enum"]) if isinstance(node.get("enum"), list) else []
            if "const" in node:
                values.append(node["const"])
            wrong = [v for v in values if not _JSON_TYPES[kind](v)]
            if wrong:
                problems.append(f"{path or '(the TD)'}: enum/const value(s) {_short(wrong)} are not of the schema's type {kind!r}")
        for key, child in node.items():
            if key not in ("enum", "const", "default"):
                stack.append((child, f"{path}.{key}" if path else key))
    return sorted(problems)


@lru_cache(maxsize=1)
def tinyfleet_terms() -> frozenset[str]:
    """Local names of every term the TinyFleet ontology defines (``tf:Device``, ``tf:hasSensor``, ...)."""
    graph = load_ontology()
    return frozenset(str(s)[len(_TF) :] for s in graph.subjects() if isinstance(s, URIRef) and str(s).startswith(_TF))


def unknown_terms(graph: Graph) -> list[str]:
    """One message per ``tf:`` IRI in ``graph`` that the ontology does not define, with the nearest defined term.

    Also refused: a compact ``tf`` name left as an IRI of scheme ``tf`` because the document's @context does
    not declare the prefix (JSON-LD keeps such a compact IRI as it is, and it matches nothing).
    """
    defined = tinyfleet_terms()
    undeclared = sorted({str(t) for triple in graph for t in triple if isinstance(t, URIRef) and str(t).startswith("tf:")})
    out = [f"{name} is used but @context does not declare the tf prefix: add {{\"tf\": \"{_TF}\"}}" for name in undeclared]
    unknown = sorted({str(t)[len(_TF) :] for triple in graph for t in triple
                      if isinstance(t, URIRef) and str(t).startswith(_TF) and str(t)[len(_TF) :] not in defined})
    for name in unknown:
        hint = difflib.get_close_matches(name, sorted(defined), n=1, cutoff=0.6)
        suggestion = f" (did you mean tf:{hint[0]}?)" if hint else ""
        out.append(f"unknown TinyFleet term tf:{name}{suggestion}: the ontology (ontology/tinyfleet.ttl) does not define it")
    return out


__all__ = ["SCHEMA_FILE", "rule_problems", "schema_problems", "tinyfleet_terms", "unknown_terms"]

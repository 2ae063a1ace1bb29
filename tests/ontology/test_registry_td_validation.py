"""TDs validated at the door, written from the W3C WoT TD 1.1 Recommendation: each invalid TD refused with its reason.

Doors: ``check_td`` (what Directory.put, hence HTTP PUT/POST/PATCH and the MQTT announce path,
runs), the HTTP API, ``registry validate`` and ``registry add``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from registry_server import ThreadServer
from test_registry_cli import run
from test_registry_service import TD_JSON, TOKEN, problem, td

from edge.profiles import PROFILES
from ontology.directory import ThingRejected, check_td, parse_json_body
from ontology.service import create_app
from ontology.store import RegistryStore, open_store
from ontology.td_validation import SCHEMA_FILE, schema_problems, tinyfleet_terms

TD11 = "https://www.w3.org/2022/wot/td/v1.1"


def lamp() -> dict[str, Any]:
    """A small valid TD 1.1 in the spirit of the Recommendation's examples (§ 5.1)."""
    return {
        "@context": TD11,
        "id": "urn:dev:ops:32473-WoTLamp-1234",
        "title": "MyLampThing",
        "securityDefinitions": {"basic_sc": {"scheme": "basic", "in": "header"}, "nosec_sc": {"scheme": "nosec"}},
        "security": "basic_sc",
        "properties": {"status": {"type": "string", "enum": ["on", "off"],
                                  "forms": [{"href": "https://mylamp.example.com/status"}]}},
        "actions": {"toggle": {"forms": [{"href": "https://mylamp.example.com/toggle", "op": "invokeaction"}]}},
        "events": {"overheating": {"data": {"type": "string"},
                                   "forms": [{"href": "https://mylamp.example.com/oh", "subprotocol": "longpoll"}]}},
    }


def refused(doc: Any) -> list[str]:
    with pytest.raises(ThingRejected) as caught:
        check_td(doc)
    return caught.value.problems


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]
    return change


# -- valid TDs are accepted -------------------------------------------------------------------------


def test_the_schema_shipped_is_the_td_1_1_recommendations() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["version"] == "1.1-09-November-2023" and schema["$schema"] == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_device_profiles_td_passes_every_check(profile: str) -> None:
    doc = td(f"ok-{profile}", profile)
    assert schema_problems(doc) == []
    assert len(check_td(doc)) > 10


@pytest.mark.parametrize("variant", ["plain", "context-list", "old-context-first", "combo", "one-type-link", "form-security"])
def test_valid_td_1_1_variants_are_accepted(variant: str) -> None:
    doc = lamp()
    if variant == "context-list":
        doc["@context"] = [TD11, {"saref": "https://w3id.org/saref#"}]
    elif variant == "old-context-first":
        doc["@context"] = ["https://www.w3.org/2019/wot/td/v1", TD11]
    elif variant == "combo":
        doc["securityDefinitions"]["combo_sc"] = {"scheme": "combo", "oneOf": ["basic_sc", "nosec_sc"]}
        doc["security"] = ["combo_sc"]
    elif variant == "one-type-link":
        doc["links"] = [{"rel": "type", "href": "https://example.com/lamp.tm.jsonld", "type": "application/tm+json"},
                        {"rel": "alternate", "href": "https://example.com/lamp.html"}]
    elif variant == "form-security":
        doc["properties"]["status"]["forms"][0]["security"] = ["nosec_sc"]
    check_td(doc)


# -- invalid TDs are refused, each with its reason ---------------------------------------------------------


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # § 5.3.4.2 Form: op is one of the well-known operation types, lower case
    "op-camel-case": (_set("actions/toggle/forms/0/op", ["invokeAction"]),
                      'actions.toggle.forms[0].op: ["invokeAction"] is not one of ["invokeaction"'),
    "op-unknown": (_set("actions/toggle/forms/0/op", "subscribeevent"), "actions.toggle.forms[0].op"),
    "op-empty-array": (_set("actions/toggle/forms/0/op", []), "actions.toggle.forms[0].op"),
    # § 5.3.1.2 InteractionAffordance: forms is mandatory and has at least one Form
    "forms-empty": (_set("events/overheating/forms", []), "events.overheating.forms: must not be empty"),
    "property-without-forms": (_drop("properties/status/forms"), "'forms' is a required property"),
    "action-without-forms": (_drop("actions/toggle/forms"), "'forms' is a required property"),
    # § 5.3.4.2 Form: href is mandatory
    "form-without-href": (_drop("events/overheating/forms/0/href"), "'href' is a required property"),
    # § 5.3.2.1 DataSchema: type is one of the JSON types; enum items are unique and of that type
    "unknown-data-type": (_set("events/overheating/data/type", "myAmazingType"), '"myAmazingType" is not one of'),
    "duplicate-enum": (_set("properties/status/enum", ["on", "off", "on"]), "has repeated items"),
    "empty-enum": (_set("properties/status/enum", []), "properties.status.enum: must not be empty"),
    "enum-of-another-type": (_set("properties/status/type", "number"), "not of the schema's type 'number'"),
    # § 5.3.3 Security: a scheme name is one of the known schemes, security names a definition
    "unknown-scheme": (_set("securityDefinitions/basic_sc", {"scheme": "mostSecureScheme"}),
                       "securityDefinitions.basic_sc: unknown security scheme 'mostSecureScheme'"),
    "security-names-nothing": (_set("security", ["basic"]), "security scheme 'basic' is not in securityDefinitions (did you mean 'basic_sc'?)"),
    "form-security-names-nothing": (_set("properties/status/forms/0/security", "someScheme"),
                                    "properties.status.forms[0].security: security scheme 'someScheme'"),
    "combo-names-nothing": (_set("securityDefinitions/combo_sc", {"scheme": "combo", "allOf": ["basic_sc", "digest_sc"]}),
                            "securityDefinitions.combo_sc.allOf: security scheme 'digest_sc'"),
    "empty-security-definitions": (_set("securityDefinitions", {}), "securityDefinitions"),
    "empty-security": (_set("security", []), "'security' is required"),
    # § 5.3.1.1 Thing: title is mandatory; @context is mandatory
    "no-title": (_drop("title"), "'title' is required"),
    "no-context": (_drop("@context"), "@context must be"),
    # § 5.3.1.3 VersionInfo: instance is mandatory
    "version-without-instance": (_set("version", {"model": "1.0.0"}), "version: 'instance' is a required property"),
    # § 5.3.4.1 Link: at most one link with rel "type"
    "two-type-links": (_set("links", [{"rel": "type", "href": "https://a.example/tm"}, {"rel": "type", "href": "https://b.example/tm"}]),
                       'at most one link may have rel "type"'),
    # an affordance is an object
    "affordance-not-an-object": (_set("actions/wrong", "shouldBeObject"), "actions.wrong"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_invalid_td_is_refused_with_its_reason(case: str) -> None:
    change, reason = CASES[case]
    doc = copy.deepcopy(lamp())
    change(doc)
    problems = refused(doc)
    assert any(reason in p for p in problems), problems


def test_every_violation_is_listed_at_once() -> None:
    doc = lamp()
    doc["actions"]["toggle"]["forms"][0]["op"] = "invokeAction"
    del doc["events"]["overheating"]["forms"][0]["href"]
    doc["security"] = "nope"
    doc["tf:hasSensr"] = {"@type": "tf:Microphone"}  # and no tf prefix in @context
    problems = refused(doc)
    for expected in ("actions.toggle.forms[0].op", "'href' is a required property", "security scheme 'nope'",
                     "tf:hasSensr is used but @context does not declare the tf prefix"):
        assert any(expected in p for p in problems), (expected, problems)


def test_duplicate_json_keys_are_refused_not_merged() -> None:
    text = '{"@context": "%s", "title": "a", "title": "b", "securityDefinitions": {"s": {"scheme": "nosec"}, "s": {"scheme": "basic"}}, "security": "s"}' % TD11
    with pytest.raises(ThingRejected, match="duplicate JSON member name") as caught:
        parse_json_body(text)
    assert '"title"' in str(caught.value) and '"s"' in str(caught.value)


# -- the TinyFleet vocabulary is closed --------------------------------------------------------------------


def test_an_unknown_tf_property_is_refused_with_a_suggestion() -> None:
    doc = td("typo-1")
    doc["tf:hasSensr"] = doc.pop("tf:hasSensor")
    problems = refused(doc)
    assert any("unknown TinyFleet term tf:hasSensr (did you mean tf:hasSensor?)" in p for p in problems), problems


def test_an_unknown_tf_class_is_refused_with_a_suggestion() -> None:
    doc = td("typo-2")
    doc["@type"] = ["Thing", "tf:Devise"]
    problems = refused(doc)
    assert any("tf:Devise (did you mean tf:Device?)" in p for p in problems), problems


def test_a_tf_term_with_nothing_near_gets_no_false_suggestion() -> None:
    doc = td("typo-3")
    doc["tf:zzqx"] = 1
    problems = refused(doc)
    assert any("unknown TinyFleet term tf:zzqx:" in p for p in problems), problems
    assert {"Device", "hasSensor", "ramBytes"} <= tinyfleet_terms()


# -- the same rules at every door --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, purge_interval_s=3600)) as base:
        yield base


def test_http_refuses_with_every_violation_as_problem_json(url: str) -> None:
    doc = td("http-1")
    doc["actions"]["updateModel"]["forms"][0]["op"] = ["invokeAction"]
    doc["tf:hasSensr"] = doc.pop("tf:hasSensor")
    body = problem(httpx.put(f"{url}/things/http-1", json=doc, headers=TD_JSON), 400, "invalid-thing-description")
    assert any("actions.updateModel.forms[0].op" in e for e in body["errors"])
    assert any("did you mean tf:hasSensor?" in e for e in body["errors"])
    assert httpx.get(f"{url}/things/http-1").status_code == 404
    ok = td("http-2")
    assert httpx.put(f"{url}/things/http-2", json=ok, headers=TD_JSON).status_code == 201
    patch = {"actions": {"updateModel": {"forms": []}}}
    body = problem(httpx.patch(f"{url}/things/http-2", json=patch,
                               headers={**TD_JSON, "Content-Type": "application/merge-patch+json"}), 400, "invalid-thing-description")
    assert any("must not be empty" in e for e in body["errors"])


def test_registry_validate_and_add_refuse_the_same(tmp_path: Path) -> None:
    no_context = td("cli-ctx")
    del no_context["@context"]
    (tmp_path / "no-context.json").write_text(json.dumps(no_context))
    code, output = run("validate", str(tmp_path / "no-context.json"))
    assert code == 1 and "@context must be" in output, output  # it used to say "ok"
    bad_op = lamp()
    bad_op["actions"]["toggle"]["forms"][0]["op"] = ["invokeAction"]
    (tmp_path / "bad-op.json").write_text(json.dumps(bad_op))
    code, output = run("validate", str(tmp_path / "bad-op.json"))
    assert code == 1 and "actions.toggle.forms[0].op" in output
    code, output = run("add", str(tmp_path / "bad-op.json"), store=tmp_path / "reg")
    assert code == 1 and "actions.toggle.forms[0].op" in output
    (tmp_path / "lamp.json").write_text(json.dumps(lamp()))
    code, output = run("validate", str(tmp_path / "lamp.json"))
    assert code == 0, output


def test_the_store_is_untouched_by_a_refused_td() -> None:
    with open_store("memory:") as store:
        before = store.graph_names()
        doc = td("untouched")
        doc["@type"] = ["Thing", "tf:Devise"]
        from ontology.directory import Directory

        with pytest.raises(ThingRejected):
            Directory(store).put("untouched", doc)
        assert store.graph_names() == before
        assert isinstance(store, RegistryStore)

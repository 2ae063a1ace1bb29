"""The Registry page: a SPARQL box, the shipped named queries as forms, a Thing Description viewer, a guarded write.

Every form is a plain HTML form answered by the server (the console runs the
query against the registry's own ``/sparql`` or ``/queries/{name}`` and renders
the rows), so it works without JavaScript. Writes go to the registry as they
are, with the token the user types: without it the registry refuses them,
and the page shows its answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from server.console.html import e, layout, notice, table

EXAMPLE = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?device ?ram WHERE {
  ?device tf:hasCapability ?cap . ?cap tf:capabilityRamBytes ?ram .
} LIMIT 20"""


def results(columns: Sequence[str], rows: Sequence[Mapping[str, str]], *, table_id: str) -> str:
    count = f'<p class="summary"><span class="row-count">{len(rows)}</span> row(s)</p>'
    return count + table(columns, ([e(row.get(c, "")) for c in columns] for row in rows), table_id=table_id,
                         empty="no rows")


def _named_form(query: Mapping[str, Any], chosen: str, values: Mapping[str, str]) -> str:
    fields = "".join(
        f'<label title="{e(p["doc"])}">{e(p["name"])} ({e(p["kind"])}) '
        f'<input name="p.{e(p["name"])}" value="{e(values.get(p["name"], "") if chosen == query["name"] else "")}" required></label>'
        for p in query["params"]
    )
    return (f'<form class="named" method="get" action="/registry#named-result" data-query="{e(query["name"])}">'
            f'<input type="hidden" name="named" value="{e(query["name"])}">'
            f'<h3>{e(query["name"])}</h3><p class="muted">{e(query["summary"])}</p>{fields}'
            '<button type="submit">Run</button></form>')


def registry_page(*, label: str, queries: Sequence[Mapping[str, Any]], things: Sequence[Mapping[str, Any]],
                  sparql: str, sparql_result: str, named: str, named_values: Mapping[str, str], named_result: str,
                  thing: Mapping[str, Any] | None, thing_id: str, write_result: str, error: str | None,
                  writable: bool) -> str:
    """The whole page; each ``*_result`` is already rendered HTML (or empty)."""
    box = ('<section id="sparql"><h2>SPARQL</h2>'
           '<form method="get" action="/registry#sparql" id="sparql-form">'
           f'<textarea name="query" rows="7" cols="90" spellcheck="false">{e(sparql or EXAMPLE)}</textarea>'
           '<button type="submit">Run query</button></form>'
           f'<div id="sparql-result">{sparql_result}</div></section>')
    forms = "".join(_named_form(q, named, named_values) for q in queries)
    named_part = (f'<section id="named"><h2>Named queries</h2><div class="forms">{forms}</div>'
                  f'<div id="named-result">{named_result}</div></section>')
    links = "".join(
        f'<li><a href="/registry?thing={e(td.get("id", ""))}#tds">{e(str(td.get("id", "")).rsplit("/", 1)[-1])}</a></li>'
        for td in things
    )
    viewer = ""
    if thing_id:
        viewer = (f'<pre class="td" id="td-view">{e(json.dumps(thing, indent=2, ensure_ascii=False))}</pre>' if thing
                  else notice(f"no live Thing {thing_id!r} is registered"))
    tds = (f'<section id="tds"><h2>Thing Descriptions ({len(things)})</h2>'
           f'<div class="td-viewer"><ul class="td-list">{links}</ul>{viewer}</div></section>')
    write = ('<section id="write"><h2>Write</h2><p class="muted">SPARQL updates go to the registry as sent; '
             'it refuses them without its bearer token.</p>'
             '<form method="post" action="/registry/update#write" id="update-form">'
             '<textarea name="update" rows="3" cols="90" spellcheck="false">'
             'PREFIX tf: &lt;https://w3id.org/tinyfleet#&gt;\nINSERT DATA { &lt;urn:x:note&gt; tf:note "hello" }</textarea>'
             '<label>Token <input type="password" name="token" autocomplete="off"></label>'
             '<button type="submit">Run update</button></form>'
             f'<div id="write-result">{write_result}</div></section>')
    source = f'<p class="sources">registry {e(label)}</p>'
    return layout("Registry", "registry", source + notice(error) + box + named_part + tds + write, writable=writable)

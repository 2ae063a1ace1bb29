"""The Fleet page: every device, whether it is online, what fits it, what it did, and why it is left out."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from server.console.fleet import DeviceRow, Federation, FleetFilter, RegistryFacts
from server.console.html import ago, e, layout, live, notice, number, select

#: The table of every device is the page's heaviest part to render (in the console and in the browser), and a
#: round's telemetry arrives device by device: re-fetched at most every 2 s, it stays current within a round.
FLEET_GAP_MS = 2000
HEADERS = ("Device", "Profile", "RAM / flash (usable)", "Sensors", "Status", "Last seen", "Models that fit",
           "Rounds", "Bytes up / down", "Energy", "Eligibility")


def _status(row: DeviceRow) -> str:
    state = {True: "online", False: "offline", None: "unknown"}[row.online]
    return f'<span class="status {state}">{state}</span>'


def _eligibility(row: DeviceRow, federations: Sequence[Federation]) -> str:
    if not federations:
        return '<span class="muted">no federation registered</span>'
    parts = []
    for federation in federations:
        if row.eligible.get(federation.name):
            parts.append(f'<span class="eligible">eligible for {e(federation.name)}</span>')
        else:
            reason = row.reasons.get(federation.name, "not eligible")
            parts.append(f'<span class="excluded">excluded from {e(federation.name)}: <span class="reason">{e(reason)}</span></span>')
    return "<br>".join(parts)


def _rounds(row: DeviceRow) -> str:
    if not row.rounds:
        return "0"
    shown = ", ".join(str(r) for r in row.rounds[-8:])
    return f'{len(row.rounds)} <span class="muted">({"…, " if len(row.rounds) > 8 else ""}{shown})</span>'


def _row(row: DeviceRow, federations: Sequence[Federation]) -> str:
    memory = (f"{number(row.ram_bytes)} B / {number(row.flash_bytes)} B" if row.ram_bytes is not None else "–")
    cells = [
        f'<a href="/registry?thing={e(row.iri)}" title="{e(row.title)}">{e(row.device_id)}</a>'
        + ("" if row.registered else ' <span class="muted">(not registered)</span>'),
        e(row.profile or "–"), memory, e(", ".join(row.sensors) or "–"), _status(row), ago(row.last_seen),
        e(", ".join(row.models) or "none"), _rounds(row),
        f"{number(row.bytes_up)} / {number(row.bytes_down)}", f"{number(row.energy_j * 1000, ',.1f')} mJ",
        _eligibility(row, federations),
    ]  # fmt: skip
    body = "".join(f"<td>{cell}</td>" for cell in cells)
    online = {True: "true", False: "false", None: "unknown"}[row.online]
    return f'<tr data-device="{e(row.device_id)}" data-online="{online}">{body}</tr>'


def fleet_table(rows: Sequence[DeviceRow], facts: RegistryFacts, chosen: FleetFilter) -> str:
    """The live part: counts and the table of the rows the filter keeps."""
    federations = chosen.federations(facts)
    kept = [r for r in rows if chosen.keep(r, federations)]
    online = sum(1 for r in kept if r.online)
    summary = (f'<p class="summary" id="fleet-summary">{len(kept)} of {len(rows)} device(s) shown · '
               f'<span id="online-count">{online}</span> online</p>')
    if not kept:
        return summary + '<p class="empty">no device matches</p>'
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    body = "".join(_row(r, federations) for r in kept)
    return f'{summary}<table id="fleet"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def fleet_page(rows: Sequence[DeviceRow], facts: RegistryFacts, chosen: FleetFilter, *, broker: str, registry: str,
               writable: bool) -> str:
    """The whole Fleet page: where its data comes from, the filters, the live table."""
    tasks = sorted({(f.task_label, f.task_label) for f in facts.federations})
    profiles = sorted({(r.profile, r.profile) for r in rows if r.profile})
    form = (
        '<form class="filters" method="get" action="/fleet">'
        + select("task", "Task", [("", "any"), *tasks], chosen.task)
        + select("profile", "Profile", [("", "any"), *profiles], chosen.profile)
        + select("eligibility", "Eligibility", [("", "all"), ("eligible", "eligible"), ("excluded", "excluded")],
                 chosen.eligibility)
        + '<button type="submit">Filter</button></form>'
    )
    query = urlencode({k: v for k, v in vars(chosen).items() if v})
    sources = f'<p class="sources">status from {e(broker)} · registry {e(registry)}</p>'
    return layout("Fleet", "fleet", sources + notice(facts.error) + form
                  + live(f"/fragments/fleet?{query}", fleet_table(rows, facts, chosen), element_id="fleet-live",
                         gap_ms=FLEET_GAP_MS),
                  writable=writable)

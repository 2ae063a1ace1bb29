"""The Federations pages: each run with its rounds as they land, and a run's settings, charts, versions and lineage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.console.charts import line_chart
from server.console.html import e, layout, live, notice, number, table

LOSS_BEFORE, LOSS_AFTER = "loss-before", "loss-after"
BYTES_UP, BYTES_DOWN = "bytes-sent", "bytes-received"  # the devices' view: sent = uplink
EPSILON = "meta-step-size"


def _metric(record: Mapping[str, Any], key: str) -> Any:
    metrics = record.get("metrics")
    return metrics.get(key) if isinstance(metrics, Mapping) else None


def _total_rounds(settings: Mapping[str, Any]) -> Any:
    return settings.get("num-rounds", settings.get("num_rounds"))


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as sorted ``section.key`` = value pairs."""
    out: list[tuple[str, str]] = []
    for key, value in sorted(settings.items()):
        if isinstance(value, Mapping):
            out.extend(flat_settings(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", str(value)))
    return out


def run_summary_cells(info: Mapping[str, Any], rounds: Sequence[Mapping[str, Any]], task: str) -> list[str]:
    last = rounds[-1] if rounds else {}
    total = _total_rounds(info.get("settings") or {})
    done = f"{len(rounds)}" + (f" / {total}" if total else "")
    loss = f"{number(_metric(last, LOSS_BEFORE), '.4f')} → {number(_metric(last, LOSS_AFTER), '.4f')}" if last else "–"
    return [
        f'<a href="/federations/{e(info["name"])}">{e(info.get("federation") or info["name"])}</a>',
        e(task or "–"), e(info.get("strategy") or "–"), f'<span class="rounds-done">{done}</span>', loss,
        number(len(last.get("participants") or ())) if last else "–",
        f"{number(_metric(last, BYTES_UP))} / {number(_metric(last, BYTES_DOWN))}" if last else "–",
        number(_metric(last, EPSILON), ".3f") if last else "–",
    ]  # fmt: skip


def runs_table(runs: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]], str]],
               registry_only: Sequence[tuple[str, str, int]]) -> str:
    """The live part of the Federations page: the runs being watched, then federations only the registry knows."""
    watched = table(("Federation", "Task", "Strategy", "Rounds", "Loss before → after (last)", "Participants",
                     "Bytes up / down (last)", "ε (last)"),
                    (run_summary_cells(info, rounds, task) for info, rounds, task in runs), table_id="runs",
                    empty="no run is being watched (start the console with --workdir)")
    others = ""
    if registry_only:
        others = "<h2>In the registry</h2>" + table(
            ("Federation", "Task", "Versions"),
            ([f'<a href="/federations/{e(name)}">{e(name)}</a>', e(task), number(count)] for name, task, count in registry_only),
            table_id="registry-federations")
    return watched + others


def federations_page(body: str, error: str | None, writable: bool) -> str:
    runs = live("/fragments/federations", body, element_id="runs-live", on=("round", "registry"))
    return layout("Federations", "federations", notice(error) + runs, writable=writable)


#: The run page's tables show the newest rows only (the charts show every round; ``/api/runs`` has all of them):
#: a page re-rendered every round must not grow with the run.
NEWEST_ROWS = 25


def _newest_note(shown: int, total: int, where: str) -> str:
    return f'<p class="muted">the newest {shown} of {total}; all of them in {where}</p>' if total > shown else ""


def run_live(rounds: Sequence[Mapping[str, Any]]) -> str:
    """The live part of a run's page: its charts and the table of its newest rounds."""
    def series(key: str) -> list[tuple[float, float]]:
        return [(r["round"], v) for r in rounds if isinstance(v := _metric(r, key), (int, float))]

    charts = "".join([
        line_chart("Probe loss", {"before": series(LOSS_BEFORE), "after": series(LOSS_AFTER)}, chart_id="chart-loss"),
        line_chart("Bytes per round", {"up": series(BYTES_UP), "down": series(BYTES_DOWN)}, chart_id="chart-bytes"),
        line_chart("Meta step ε", {"ε": series(EPSILON)}, chart_id="chart-epsilon"),
        line_chart("Participants", {"devices": [(r["round"], len(r.get("participants") or ())) for r in rounds]},
                   chart_id="chart-participants"),
    ])  # fmt: skip
    rows = (
        [str(r["round"]), number(len(r.get("participants") or ())), number(_metric(r, LOSS_BEFORE), ".4f"),
         number(_metric(r, LOSS_AFTER), ".4f"), number(_metric(r, BYTES_UP)), number(_metric(r, BYTES_DOWN)),
         number(_metric(r, EPSILON), ".3f"), number(r.get("failures")), number(r.get("elapsed_s"), ".1f")]
        for r in reversed(rounds[-NEWEST_ROWS:])
    )  # fmt: skip
    return (f'<p class="summary">rounds done: <span id="rounds-done">{len(rounds)}</span></p>'
            f'<div class="charts">{charts}</div>'
            + table(("Round", "Participants", "Loss before", "Loss after", "Bytes up", "Bytes down", "ε", "Failures",
                     "Elapsed s"), rows, table_id="rounds", empty="no round has finished yet")
            + _newest_note(min(len(rounds), NEWEST_ROWS), len(rounds), "<code>/api/runs</code>"))


def lineage_table(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    """``model-lineage``'s rows as it returns them, newest first; device IRIs shortened to their ids."""
    def cell(column: str, value: str) -> str:
        if column == "devices":
            return e(" ".join(v.rsplit("/", 1)[-1] for v in value.split()))
        if column == "metrics":
            return "<br>".join(e(m) for m in value.split())
        return e(value)

    shown = rows[:NEWEST_ROWS]
    return (table(columns, ([cell(c, row.get(c, "")) for c in columns] for row in shown), table_id="lineage",
                  empty="no version registered yet")
            + _newest_note(len(shown), len(rows), "the registry's <code>model-lineage</code> query"))


def run_page(name: str, info: Mapping[str, Any] | None, task: str, rounds: Sequence[Mapping[str, Any]] | None,
             lineage: tuple[Sequence[str], Sequence[Mapping[str, str]]] | None, error: str | None, writable: bool) -> str:
    """One federation: settings, live charts and rounds (a watched run), its versions' lineage (the registry)."""
    parts = [notice(error)]
    if info is not None:
        facts = [("federation", info.get("federation") or name), ("task", task or "–"),
                 ("strategy", info.get("strategy") or "–"), ("workdir", str(info.get("workdir", "")))]
        parts.append(table(("", ""), ([e(k), e(v)] for k, v in facts), table_id="run-facts"))
    if rounds is not None:
        parts.append("<h2>Rounds</h2>" + live(f"/fragments/federations/{name}", run_live(rounds), element_id="run-live",
                                                   on=("round",)))
    if lineage is not None:
        columns, rows = lineage
        parts.append("<h2>Model versions and lineage</h2>"
                     '<p class="muted">the registry\'s <code>model-lineage</code> of the newest version (PROV-O)</p>'
                     + live(f"/fragments/lineage/{name}", lineage_table(columns, rows), element_id="lineage-live",
                            on=("round", "registry"), gap_ms=2000))
    if info is not None:
        settings = flat_settings(info.get("settings") or {})
        parts.append("<details><summary>Settings</summary>"
                     + table(("setting", "value"), ([e(k), e(v)] for k, v in settings), table_id="settings",
                             empty="the settings appear with the first checkpoint")
                     + "</details>")
    return layout(f"Federation {name}", "federations", "".join(parts), writable=writable)

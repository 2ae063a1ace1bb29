"""The console's HTML pieces: what a live part asks the script to do, and tables that do not grow with a run."""

from __future__ import annotations

import re

import pytest

from server.console.html import live
from server.console.pages_runs import NEWEST_ROWS, lineage_table, run_live


def test_a_live_part_names_the_news_it_shows_and_its_gap() -> None:
    html = live("/fragments/x", "<p>x</p>", element_id="x", on=("round",), gap_ms=2500)
    assert 'data-fragment="/fragments/x"' in html and 'data-on="round"' in html and 'data-gap-ms="2500"' in html
    assert 'data-on="round presence registry"' in live("/f", "", element_id="y")  # all news by default


@pytest.mark.parametrize("on", [(), ("rounds",), ("round", "weather")])
def test_a_live_part_of_unknown_or_no_news_is_refused(on: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="a live part shows some of"):
        live("/f", "", element_id="z", on=on)


def test_the_rounds_table_shows_the_newest_rounds_and_says_where_the_rest_are() -> None:
    rounds = [{"round": r, "participants": ["sine-1"], "metrics": {}} for r in range(1, NEWEST_ROWS + 11)]
    html = run_live(rounds)
    table = html.split('<table id="rounds">', 1)[1].split("</table>", 1)[0]
    shown = [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", table)]
    assert shown == list(range(NEWEST_ROWS + 10, 10, -1))  # newest first, NEWEST_ROWS of them
    assert f"the newest {NEWEST_ROWS} of {NEWEST_ROWS + 10}" in html and "/api/runs" in html
    assert f'<span id="rounds-done">{NEWEST_ROWS + 10}</span>' in html  # the count is of every round
    assert "the newest" not in run_live(rounds[:3])  # a short run: every row, no note


def test_the_lineage_table_is_bounded_too() -> None:
    rows = [{"version": f"v{i}"} for i in range(NEWEST_ROWS * 2, 0, -1)]
    html = lineage_table(["version"], rows)
    assert html.count("<tr><td>") == NEWEST_ROWS and f"the newest {NEWEST_ROWS} of {NEWEST_ROWS * 2}" in html
    assert "<td>v50</td>" in html and "<td>v1</td>" not in html

"""The console's readers on their own: rounds.jsonl as it grows, is cut mid-line or replaced, broker URLs, charts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from server.console.charts import line_chart
from server.console.fleet import exclusion_reason
from server.console.sources import RoundFeed, broker_from_accounts, parse_broker_url
from server.core.round_loop import RoundReport
from server.core.run_dir import RoundsLog


def _report(number: int) -> RoundReport:
    return RoundReport(server_round=number, weights={"w": np.zeros(1, np.float32)}, metrics={"loss-after": 1.0 / number},
                       participant_devices=("https://w3id.org/tinyfleet/id/device/sine-0",), replies=1)


def test_the_feed_reads_what_the_rounds_log_appends_and_waits_for_a_half_written_line(tmp_path) -> None:
    path = tmp_path / "rounds.jsonl"
    feed, log = RoundFeed(path), RoundsLog(path)
    assert not feed.refresh() and feed.rounds() == []  # no file yet
    log(_report(1))
    assert feed.refresh() and [r["round"] for r in feed.rounds()] == [1]
    version = feed.version
    with path.open("a") as out:  # the writer is mid-line
        out.write(json.dumps({"round": 2, "metrics": {}})[:10])
    assert not feed.refresh() and feed.version == version
    with path.open("a") as out:
        out.write(json.dumps({"round": 2, "metrics": {}})[10:] + "\n" + "not json\n")
    assert feed.refresh() and [r["round"] for r in feed.rounds()] == [1, 2]  # the garbage line is skipped


def test_a_fresh_run_replacing_the_file_starts_the_feed_over(tmp_path) -> None:
    path = tmp_path / "rounds.jsonl"
    feed, log = RoundFeed(path), RoundsLog(path)
    for number in (1, 2, 3):
        log(_report(number))
    feed.refresh()
    path.unlink()  # what `tinyfleet server --fresh` does
    for number in (1, 2, 3, 4):  # longer than the old file by the time the console looks again
        RoundsLog(path)(_report(number))
    feed.refresh()
    assert [r["round"] for r in feed.rounds()] == [1, 2, 3, 4]


def test_a_longer_file_under_the_same_inode_is_seen_as_new(tmp_path) -> None:
    """Some file systems hand a new file the inode just freed; the feed must not read on from the old offset."""
    path = tmp_path / "rounds.jsonl"
    path.write_text("".join(json.dumps({"round": n, "metrics": {}}) + "\n" for n in (1, 2, 3)))
    feed = RoundFeed(path)
    assert feed.refresh()
    path.write_text("".join(json.dumps({"round": n, "metrics": {"loss-after": 0.5}}) + "\n" for n in (1, 2, 3, 4)))
    feed.refresh()
    assert [r["round"] for r in feed.rounds()] == [1, 2, 3, 4]
    assert all(r["metrics"] == {"loss-after": 0.5} for r in feed.rounds())


@pytest.mark.parametrize("url,message", [
    ("http://127.0.0.1:1883", "give mqtt://"),
    ("mqtt://127.0.0.1", "host and port are required"),
    ("mqtt://127.0.0.1:notaport", "host and port are required"),
    ("mqtts://127.0.0.1:8883", "needs --tls-ca"),
])
def test_bad_broker_urls_say_what_is_wrong(url, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_broker_url(url)


def test_a_broker_url_with_credentials_and_the_accounts_file(tmp_path) -> None:
    address = parse_broker_url("mqtt://viewer:s%40cret@127.0.0.1:1884")
    assert (address.host, address.port, address.username, address.password) == ("127.0.0.1", 1884, "viewer", "s@cret")
    assert "s@cret" not in str(address)  # printed addresses never carry the password
    assert parse_broker_url("mqtt://127.0.0.1:1884", password="p").username == "tinyfleet-server"
    accounts = tmp_path / "accounts.json"
    assert broker_from_accounts(accounts, "p") is None  # the server has not written it yet
    accounts.write_text(json.dumps({"host": "127.0.0.1", "port": 4321, "devices": {}}))
    assert broker_from_accounts(accounts, "p").port == 4321


def test_the_exclusion_reasons_name_every_shortfall() -> None:
    needs = ({"https://w3id.org/tinyfleet#TFLiteMicro"}, 50_000, 272_760)
    assert exclusion_reason(({"https://w3id.org/tinyfleet#TFLiteMicro"}, 176_128, 643_072), needs) == \
        "usable RAM 176,128 B < 272,760 B to train the model"
    both = exclusion_reason(({"https://w3id.org/tinyfleet#LiteRT"}, 300_000, 10_000), needs)
    assert "usable flash 10,000 B < model size 50,000 B" in both and "is not the model's" in both
    assert "no capability" in exclusion_reason(None, needs)


def test_a_chart_draws_its_points_escapes_its_labels_and_says_when_it_is_empty() -> None:
    svg = line_chart("loss <probe>", {"before": [(1, 2.0), (2, 1.0)], "after": [(1, float("nan")), (2, 0.5)]})
    assert svg.count("<polyline") == 2 and "&lt;probe&gt;" in svg
    assert "no rounds yet" in line_chart("empty", {"a": []})

"""The console's HTML frame and table helpers: every value escaped, every page whole without JavaScript.

A live part of a page is an element with ``data-fragment="URL"``: the server
renders it into the page, and ``static/console.js`` (the only script) re-fetches
that URL when the console's event stream says something changed. Without
JavaScript the page is the same, only not live.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape

PAGES = (("fleet", "/fleet", "Fleet"), ("federations", "/federations", "Federations"), ("registry", "/registry", "Registry"))


def e(value: object) -> str:
    """Escaped text of any value (``None`` as an empty string)."""
    return "" if value is None else escape(str(value))


def layout(title: str, active: str, body: str, *, writable: bool = False) -> str:
    """A whole page: header with navigation and the live/read-only badges, then ``body``."""
    nav = " ".join(
        f'<a href="{href}"{" aria-current=page" if name == active else ""}>{label}</a>' for name, href, label in PAGES
    )
    mode = "token required for writes" if writable else "read-only"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>TinyFleet console · {e(title)}</title>"
        '<link rel="stylesheet" href="/static/console.css"><script src="/static/console.js" defer></script></head>'
        '<body data-stream="/api/stream" data-registry-events="/api/registry/events">'
        f'<header><span class="brand">TinyFleet console</span><nav>{nav}</nav>'
        f'<span id="live" class="badge" title="live updates (Server-Sent Events)">static</span>'
        f'<span class="badge mode">{mode}</span></header>'
        f"<main><h1>{e(title)}</h1>{body}</main></body></html>"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, table_id: str = "", empty: str = "nothing yet") -> str:
    """A table of already-escaped cells (``rows`` yields HTML), or ``empty`` in a paragraph if there is no row."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty"{_id(table_id, "-empty")}>{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table{_id(table_id)}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _id(element_id: str, suffix: str = "") -> str:
    return f' id="{e(element_id + suffix)}"' if element_id else ""


#: The news a live part can show: a round was recorded, a device's status or telemetry came in, a TD changed.
NEWS = ("round", "presence", "registry")


def live(url: str, inner: str, *, element_id: str, on: Sequence[str] = NEWS, gap_ms: int = 1000) -> str:
    """A part of the page that ``console.js`` re-fetches from ``url`` on the news in ``on``, at most every
    ``gap_ms``: a part is fetched only for what it shows, so an open page costs the round little."""
    unknown = set(on) - set(NEWS)
    if unknown or not on:
        raise ValueError(f"a live part shows some of {NEWS}, not {sorted(unknown) or 'nothing'}")
    return (f'<div id="{e(element_id)}" data-fragment="{e(url)}" data-on="{" ".join(on)}" data-gap-ms="{int(gap_ms)}">'
            f"{inner}</div>")


def number(value: object, spec: str = ",.0f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def ago(moment: float | None, now: float | None = None) -> str:
    """``12 s ago`` / ``3 min ago`` (with the time as a tooltip), or ``never``."""
    if moment is None:
        return "never"
    seconds = max(0.0, (now or time.time()) - moment)
    text = f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.1f} h ago"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))
    return f'<time datetime="{stamp}" title="{stamp}">{text}</time>'


def select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str) -> str:
    """A labelled ``<select>`` of (value, text) options with ``chosen`` selected."""
    items = "".join(f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(t)}</option>' for v, t in options)
    return f'<label>{e(label)} <select name="{e(name)}">{items}</select></label>'


def notice(text: str | None, kind: str = "error") -> str:
    return f'<p class="{kind}" role="status">{e(text)}</p>' if text else ""

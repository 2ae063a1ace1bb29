// TinyFleet console: the only script. Pages are whole without it; with it they are live.
// It listens to two Server-Sent Event streams, the console's (/api/stream: rounds, device presence) and the
// registry's WoT Discovery /events (registrations), and on news re-fetches every [data-fragment] element of
// the page from its URL, at most once a second each. Nothing else: no framework, no network but this origin.
"use strict";
(function () {
  const badge = document.getElementById("live");
  const parts = Array.from(document.querySelectorAll("[data-fragment]"));
  const MIN_GAP_MS = 1000;
  const state = new Map(parts.map((el) => [el, { busy: false, again: false, last: 0 }]));

  function refresh(el) {
    const s = state.get(el);
    if (s.busy) { s.again = true; return; }
    const wait = s.last + MIN_GAP_MS - Date.now();
    if (wait > 0) { s.busy = true; setTimeout(() => { s.busy = false; refresh(el); }, wait); return; }
    s.busy = true;
    s.last = Date.now();
    fetch(el.dataset.fragment, { headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(r.status))))
      .then((html) => { el.innerHTML = html; el.dataset.updated = String(Date.now()); })
      .catch(() => {})
      .finally(() => { s.busy = false; if (s.again) { s.again = false; refresh(el); } });
  }

  function refreshAll() { parts.forEach(refresh); }

  function listen(url, events, onOpen) {
    if (!url || !window.EventSource) return null;
    const source = new EventSource(url);
    events.forEach((name) => source.addEventListener(name, refreshAll));
    source.addEventListener("open", onOpen || (() => {}));
    return source;
  }

  // Close the streams when the page is left: a page kept in the back-forward cache would otherwise hold its
  // two connections, and a browser allows only six per host.
  let sources = [];
  function open() {
    const body = document.body;
    const stream = listen(body.dataset.stream, ["round", "presence"], () => {
      if (badge) { badge.textContent = "live"; badge.classList.add("on"); }
    });
    if (stream) {
      stream.addEventListener("error", () => {
        if (badge) { badge.textContent = "reconnecting"; badge.classList.remove("on"); }
      });
    }
    sources = [stream, listen(body.dataset.registryEvents, ["thing_created", "thing_updated", "thing_deleted"])];
  }
  window.addEventListener("pagehide", () => { sources.forEach((s) => s && s.close()); sources = []; });
  window.addEventListener("pageshow", (event) => { if (event.persisted) { open(); refreshAll(); } });
  open();
})();

// TinyFleet console: the only script. Pages are whole without it; with it they are live.
// It listens to two Server-Sent Event streams, the console's (/api/stream: rounds, device presence) and the
// registry's WoT Discovery /events (registrations). Each [data-fragment] element (written by the server's
// html.live) names the news it shows (data-on: some of "round", "presence", "registry") and how often at
// most it is re-fetched (data-gap-ms). Why so frugal: the console shares the machine with the federation it
// shows, and a round must not slow down because a page is open (bench/console.py measures it). So a
// fragment is fetched only for news it shows, never while its tab is hidden (once when it is shown again),
// and the page is touched only if the fragment's HTML changed. No framework, no network but this origin.
"use strict";
(function () {
  const badge = document.getElementById("live");
  const parts = Array.from(document.querySelectorAll("[data-fragment]")).map((el) => ({
    el,
    on: new Set(el.dataset.on.split(" ")),
    gap: Number(el.dataset.gapMs),
    busy: false, again: false, stale: false, last: 0, html: null,
  }));

  function refresh(part) {
    if (document.hidden) { part.stale = true; return; }
    if (part.busy) { part.again = true; return; }
    const wait = part.last + part.gap - Date.now();
    part.busy = true;
    if (wait > 0) { setTimeout(() => { part.busy = false; refresh(part); }, wait); return; }
    part.last = Date.now();
    part.again = false; // news up to now is in this fetch
    fetch(part.el.dataset.fragment, { headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(r.status))))
      .then((html) => {
        if (html !== part.html) { part.el.innerHTML = html; part.html = html; }
        part.el.dataset.updated = String(Date.now());
      })
      .catch(() => {})
      .finally(() => { part.busy = false; if (part.again) { part.again = false; refresh(part); } });
  }

  function news(kind) { parts.forEach((part) => { if (part.on.has(kind)) refresh(part); }); }

  function listen(url, events, kind, onOpen) {
    if (!url || !window.EventSource) return null;
    const source = new EventSource(url);
    events.forEach((name) => source.addEventListener(name, (event) => news(kind || event.type)));
    source.addEventListener("open", onOpen || (() => {}));
    return source;
  }

  // Close the streams when the page is left: a page kept in the back-forward cache would otherwise hold its
  // two connections, and a browser allows only six per host.
  let sources = [];
  function open() {
    const body = document.body;
    const stream = listen(body.dataset.stream, ["round", "presence"], null, () => {
      if (badge) { badge.textContent = "live"; badge.classList.add("on"); }
    });
    if (stream) {
      stream.addEventListener("error", () => {
        if (badge) { badge.textContent = "reconnecting"; badge.classList.remove("on"); }
      });
    }
    sources = [stream, listen(body.dataset.registryEvents, ["thing_created", "thing_updated", "thing_deleted"], "registry")];
  }
  function refreshAll() { parts.forEach(refresh); }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) parts.forEach((part) => { if (part.stale) { part.stale = false; refresh(part); } });
  });
  window.addEventListener("pagehide", () => { sources.forEach((s) => s && s.close()); sources = []; });
  window.addEventListener("pageshow", (event) => { if (event.persisted) { open(); refreshAll(); } });
  open();
})();

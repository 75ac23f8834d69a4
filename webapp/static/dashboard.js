// Shipyard's dashboard: keep an open page current, and show times as "12 s ago".
//
// A live page carries a ticket and the fingerprint of what it shows (webapp/pages/live.py).
// While the tab is visible it asks /live whether that fingerprint moved: 204 means no; 200
// means yes, and the page fetches itself again and swaps its [data-live] regions (a region
// holding the focus or an open form is left alone until it is done). 401: the ticket ran out
// or the key changed; the page fetches itself again, which gives a new ticket or, when the
// session ended, says so.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`);

  function ago(iso) {
    const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (Number.isNaN(seconds)) return null;
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function refreshTimes(root) {
    for (const el of root.querySelectorAll("time[data-ago]")) {
      const text = ago(el.getAttribute("datetime"));
      if (text) el.textContent = text;
    }
  }

  function busy(region) {
    const active = document.activeElement;
    return (active && active !== document.body && region.contains(active) && active.matches("input, textarea, select"))
      || region.querySelector("form[data-editing]") !== null;
  }

  function banner(text, bad) {
    const el = document.getElementById("live-banner");
    if (!el) return;
    el.hidden = !text;
    el.textContent = text || "";
    el.classList.toggle("bad", Boolean(bad));
  }

  async function reload() {
    const response = await fetch(window.location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" });
    if (response.redirected && new URL(response.url).pathname.startsWith("/login")) {
      banner("Your session has ended: reload the page to log in again.", true);
      return false;
    }
    if (!response.ok) {
      banner(`This page could not be refreshed (${response.status}); retrying.`, true);
      return true;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of fresh.querySelectorAll("[data-live][id]")) {
      const old = document.getElementById(region.id);
      if (old && !busy(old)) old.replaceWith(document.importNode(region, true));
    }
    for (const name of ["live-ticket", "live-fingerprint"]) {
      const incoming = fresh.querySelector(`meta[name="${name}"]`);
      if (incoming && meta(name)) meta(name).content = incoming.content;
    }
    refreshTimes(document);
    document.dispatchEvent(new CustomEvent("shipyard:refreshed"));
    banner("");
    return true;
  }

  function startPolling() {
    if (!meta("live-ticket")) return;
    const every = Math.max(0.25, parseFloat(meta("live-poll").content) || 1) * 1000;
    let failures = 0;

    async function poll() {
      let again = true;
      if (!document.hidden) {
        try {
          const query = new URLSearchParams({ t: meta("live-ticket").content, seen: meta("live-fingerprint").content });
          const response = await fetch(`/live?${query}`, { credentials: "same-origin", cache: "no-store" });
          if (response.status === 200 || response.status === 401) again = await reload();
          failures = 0;
          if (response.status === 204) banner("");
        } catch (error) {
          failures += 1;
          if (failures >= 3) banner("The control plane cannot be reached; this page shows what it last said.", true);
        }
      }
      if (again) setTimeout(poll, every * (0.8 + Math.random() * 0.4) * Math.min(1 + failures, 10));
    }
    setTimeout(poll, every);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshTimes(document); });
  }

  window.shipyard = { reload, refreshTimes };
  document.addEventListener("DOMContentLoaded", () => {
    refreshTimes(document);
    setInterval(() => refreshTimes(document), 5000);
    startPolling();
  });
})();

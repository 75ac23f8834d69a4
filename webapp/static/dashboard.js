// Shipyard's dashboard: keep an open page current, and show times as "12 s ago".
//
// A live page carries a ticket and the fingerprint of what it shows (webapp/pages/live.py).
// While the tab is visible it asks /live whether that fingerprint moved (every live-poll
// seconds, or three times that after a minute without a change): 204 means no; 200
// means yes, and the page fetches itself again and swaps its [data-live] regions (a region
// holding the focus or an open form is left alone until it is done). 401: the ticket ran out
// or the key changed; the page fetches itself again, which gives a new ticket or, when the
// session ended, says so.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`);
  const QUIET_AFTER_MS = 60000;

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
    let changed = Date.now();
    // while what the page shows keeps changing (a deploy rolling out), ask every `every`; a page
    // left open with nothing happening asks a third as often
    const pause = () => (Date.now() - changed < QUIET_AFTER_MS ? every : every * 3);

    async function poll() {
      let again = true;
      if (!document.hidden) {
        try {
          const query = new URLSearchParams({ t: meta("live-ticket").content, seen: meta("live-fingerprint").content });
          const response = await fetch(`/live?${query}`, { credentials: "same-origin", cache: "no-store" });
          if (response.status === 200) changed = Date.now();
          if (response.status === 200 || response.status === 401) again = await reload();
          failures = 0;
          if (response.status === 204) banner("");
        } catch (error) {
          failures += 1;
          if (failures >= 3) banner("The control plane cannot be reached; this page shows what it last said.", true);
        }
      }
      if (again) setTimeout(poll, pause() * (0.8 + Math.random() * 0.4) * Math.min(1 + failures, 10));
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

// --- actions: confirmations, the deploy form's checks as you type, logs --------------------------
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  function gotoLine(textarea, line, column) {
    const lines = textarea.value.split("\n");
    let offset = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
    offset += Math.max(0, (column || 1) - 1);
    textarea.focus();
    textarea.setSelectionRange(offset, offset);
    const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
    textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-goto-line]");
    const textarea = document.getElementById("spec");
    if (button && textarea) gotoLine(textarea, Number(button.dataset.gotoLine), Number(button.dataset.gotoColumn));
  });

  function setupDeploy() {
    const textarea = document.getElementById("spec");
    if (!textarea || !textarea.dataset.validate) return;
    const result = document.getElementById("check-result");
    const filename = document.getElementById("spec-filename");
    let timer = null;
    let sent = 0;

    function show(text, tone, problems) {
      result.className = `check-result ${tone || ""}`;
      result.replaceChildren(document.createTextNode(text));
      if (problems && problems.length) {
        const list = document.createElement("ul");
        list.className = "problems";
        for (const p of problems) {
          const item = document.createElement("li");
          if (p.line) {
            const go = document.createElement("button");
            go.type = "button";
            go.className = "link-button";
            go.dataset.gotoLine = p.line;
            go.dataset.gotoColumn = p.column || 1;
            go.textContent = `line ${p.line}, column ${p.column || 1}`;
            item.append(go, " ");
          }
          item.append(p.message);
          list.append(item);
        }
        result.append(list);
      }
    }

    async function check() {
      const text = textarea.value;
      if (!text.trim()) { show(""); return; }
      const mine = ++sent;
      const query = new URLSearchParams({ dry_run: "true", source: "dashboard", filename: filename.value || "spec.yaml" });
      try {
        const response = await fetch(`${textarea.dataset.validate}?${query}`, {
          method: "PUT", credentials: "same-origin", body: text,
          headers: { "Content-Type": "application/yaml", "X-CSRFToken": csrf() },
        });
        if (mine !== sent) return;  // an older check answering late
        const body = await response.json().catch(() => ({}));
        if (response.ok) {
          const apps = body.apps || [];
          show(`Valid: ${apps.map((a) => `${a.app} (${a.action})`).join(", ")}.`, "ok");
        } else {
          const error = body.error || {};
          show(error.message || `The check failed (${response.status}).`, "bad", error.problems);
        }
      } catch (err) {
        if (mine === sent) show("The check could not reach the control plane.", "bad");
      }
    }

    textarea.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 600); });
    const upload = document.getElementById("spec-file");
    if (upload) upload.addEventListener("change", () => {
      const file = upload.files && upload.files[0];
      if (!file) return;
      file.text().then((text) => {
        textarea.value = text;
        filename.value = file.name;
        upload.value = "";  // the text is in the form now; what is sent is what is shown
        check();
      });
    });
    if (textarea.value.trim()) check();
  }

  function setupLogs() {
    const form = document.getElementById("logs-form");
    if (!form) return;
    const output = document.getElementById("logs-output");
    const state = document.getElementById("logs-state");
    let following = null;
    let lastStamp = null;
    let generation = 0;

    async function ask(params) {
      const response = await fetch(form.dataset.commands, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
        body: JSON.stringify({ type: "logs", params }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error((body.error && body.error.message) || `refused (${response.status})`);
      const url = form.dataset.command.replace(/0$/, String(body.id));
      for (let waited = 0; waited < 60; waited++) {
        await new Promise((resolve) => setTimeout(resolve, waited < 5 ? 300 : 1000));
        const poll = await fetch(url, { credentials: "same-origin" });
        const command = await poll.json();
        if (command.state === "done") return command.result || {};
        if (command.state === "failed" || command.state === "expired") {
          throw new Error(command.error || `the command ${command.state}`);
        }
      }
      throw new Error("the cluster's agent did not answer within a minute");
    }

    function split(line) {
      const space = line.indexOf(" ");
      return space > 0 ? [line.slice(0, space), line.slice(space + 1)] : [null, line];
    }

    async function fetchLines(mine, first) {
      const data = new FormData(form);
      const params = { pod: data.get("pod"), tail_lines: Number(data.get("tail_lines")) || 200, timestamps: true,
                       previous: data.get("previous") === "1" };
      if (data.get("container")) params.container = data.get("container");
      if (!first && lastStamp) params.since_time = lastStamp;
      const result = await ask(params);
      if (mine !== generation) return;
      let lines = result.lines || [];
      if (!first) lines = lines.filter((line) => split(line)[0] !== lastStamp);
      for (const line of lines) {
        const [stamp, text] = split(line);
        if (stamp) lastStamp = stamp;
        output.append(`${text}\n`);
      }
      output.hidden = false;
      if (result.truncated && first) state.textContent = "Showing the last lines only (the log is longer).";
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearTimeout(following);
      const mine = ++generation;
      output.textContent = "";
      lastStamp = null;
      state.textContent = "Asking the cluster's agent…";
      try {
        await fetchLines(mine, true);
        const follow = new FormData(form).get("follow") === "1" && new FormData(form).get("previous") !== "1";
        state.textContent = follow ? "Following: new lines appear below." : `${output.textContent.split("\n").length - 1} line(s).`;
        const again = async () => {
          if (mine !== generation) return;
          try { await fetchLines(mine, false); } catch (err) { state.textContent = `Stopped following: ${err.message}`; return; }
          following = setTimeout(again, 2000);
        };
        if (follow) following = setTimeout(again, 2000);
      } catch (err) {
        state.textContent = `No logs: ${err.message}`;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => { setupDeploy(); setupLogs(); });
})();

// The workbench's only script: new alerts appear in the inbox without a reload, and j/k move between alerts.
// Everything works without it; it never builds markup from data, it moves in rows the server rendered.
"use strict";
(function () {
  const POLL_MS = 10000;

  function rowIds(tbody) {
    return Array.from(tbody.querySelectorAll("tr[data-alert-id]"), (tr) => tr.dataset.alertId);
  }

  function liveInbox() {
    const table = document.getElementById("inbox");
    const tbody = document.getElementById("inbox-rows");
    const live = document.getElementById("live");
    if (!table || !tbody || !table.dataset.rowsUrl) return;
    const url = table.dataset.rowsUrl;
    let busy = false;
    async function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!response.ok || !(response.headers.get("Content-Type") || "").startsWith("text/html")) return;
        const doc = new DOMParser().parseFromString("<table><tbody>" + (await response.text()) + "</tbody></table>", "text/html");
        const fresh = doc.querySelector("tbody");
        if (!fresh) return;
        const before = new Set(rowIds(tbody));
        const after = rowIds(fresh);
        if (after.length === before.size && after.every((id) => before.has(id))) return;
        const added = after.filter((id) => !before.has(id));
        const focused = document.activeElement && document.activeElement.closest("tr[data-alert-id]");
        const focusId = focused ? focused.dataset.alertId : null;
        tbody.replaceChildren(...Array.from(fresh.children, (row) => document.importNode(row, true)));
        for (const id of added) {
          const row = tbody.querySelector(`tr[data-alert-id="${CSS.escape(id)}"]`);
          if (row) row.classList.add("fresh");
        }
        if (focusId) {
          const again = tbody.querySelector(`tr[data-alert-id="${CSS.escape(focusId)}"] a`);
          if (again) again.focus();
        }
        if (added.length && live) live.textContent = table.dataset.newText.replace("{n}", String(added.length));
        const empty = document.querySelector("p.empty");
        if (empty && after.length) empty.remove();
      } catch (err) {
        // Offline for a moment (a phone on the road): the next poll tries again.
      } finally {
        busy = false;
      }
    }
    if (table.dataset.streamUrl && window.EventSource) {
      // New alerts of the caller's scope arrive as server-sent events: refresh when one does, poll as a fallback.
      const stream = new EventSource(table.dataset.streamUrl, { withCredentials: true });
      stream.addEventListener("message", refresh);
      stream.addEventListener("alert", refresh);
      window.setInterval(refresh, 6 * (Number(table.dataset.pollMs) || POLL_MS));
    } else {
      window.setInterval(refresh, Number(table.dataset.pollMs) || POLL_MS);
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    table.addEventListener("clientpulse:refresh", refresh);
  }

  function keys() {
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target;
      if (target && target.closest && target.closest("input, select, textarea")) return;
      if (event.key !== "j" && event.key !== "k") return;
      const links = Array.from(document.querySelectorAll("#inbox-rows td.title a"));
      if (!links.length) return;
      const at = links.indexOf(document.activeElement);
      const next = event.key === "j" ? Math.min(links.length - 1, at + 1) : Math.max(0, at - 1);
      links[next].focus();
      event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", () => { liveInbox(); keys(); });
})();

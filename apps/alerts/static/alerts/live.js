// The bell in the top bar and the toasts, on every page, from /ws/alerts/ (apps/alerts/consumers.py,
// payloads: apps/alerts/live.py). Every message carries the bell's count: the alerts firing that
// nobody acknowledged or muted; `alerts.changed` also lists the alerts that just started firing
// (payload.new), each shown as a toast for 8 s linking to it, once per browser tab. Reconnects by
// itself, backing off up to 30 s; the server sends the count on every (re)connect, so on `resync`
// (the server dropped messages this tab read too slowly) the tab reconnects.
(function () {
  "use strict";
  var bell = document.getElementById("alert-bell");
  var count = document.getElementById("alert-bell-count");
  var toasts = document.getElementById("alert-toasts");
  if (!bell || !count || !toasts || !window.WebSocket) return;
  var TOAST_MS = 8000;
  var SEEN_KEY = "moc-alerts-toasted";
  var delay = 1000;

  function seen() {
    try { return JSON.parse(sessionStorage.getItem(SEEN_KEY) || "[]"); } catch (e) { return []; }
  }

  function remember(id) {
    var ids = seen();
    ids.push(id);
    try { sessionStorage.setItem(SEEN_KEY, JSON.stringify(ids.slice(-200))); } catch (e) { /* private mode */ }
  }

  function showCount(firing) {
    if (typeof firing !== "number") return;
    count.textContent = String(firing);
    count.hidden = firing === 0;
    bell.classList.toggle("firing", firing > 0);
    bell.title = firing + " alert" + (firing === 1 ? "" : "s") + " firing that nobody acknowledged or muted";
  }

  function toast(p) {
    if (!p || p.id == null || seen().indexOf(p.id) !== -1) return;
    remember(p.id);
    var box = document.createElement("a");
    box.className = "toast " + (p.severity === "critical" ? "bad" : "warn");
    box.href = p.url;
    box.setAttribute("role", "status");
    var title = document.createElement("b");
    title.textContent = p.alertname + " is firing";
    var text = document.createElement("span");
    text.textContent = p.summary || "";
    box.appendChild(title);
    box.appendChild(text);
    toasts.appendChild(box);
    setTimeout(function () { box.remove(); }, TOAST_MS);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws/alerts/");
    ws.onopen = function () { delay = 1000; };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "resync") { ws.close(); return; }
      if (!msg.payload) return;
      showCount(msg.payload.firing);
      if (msg.type === "alerts.changed") (msg.payload.new || []).forEach(toast);
    };
    ws.onclose = function (ev) {
      if (ev.code === 4401 || ev.code === 4403) return; // logged out, or not allowed: no retry
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();

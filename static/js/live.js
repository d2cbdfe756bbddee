// A websocket that reconnects by itself and says so, shared by every live page.
// On every (re)connect the page re-reads a snapshot over REST: pushes are a convenience,
// the database is the truth.
(function () {
  "use strict";
  function LiveSocket(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.delay = 500;
    this.status = document.getElementById("live-status");
    this.connect();
  }
  LiveSocket.prototype.setStatus = function (state, text) {
    if (!this.status) return;
    this.status.dataset.state = state;
    this.status.textContent = text;
  };
  LiveSocket.prototype.connect = function () {
    var self = this;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + self.path);
    ws.onopen = function () {
      self.delay = 500;
      self.setStatus("live", "live");
      if (self.handlers.snapshot) self.handlers.snapshot();
    };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      var fn = self.handlers[msg.type];
      if (fn) fn(msg.payload, msg);
    };
    ws.onclose = function () {
      self.setStatus("down", "disconnected — reconnecting…");
      setTimeout(function () { self.connect(); }, self.delay);
      self.delay = Math.min(self.delay * 2, 15000);
    };
  };

  // The telemetry stream (docs/TELEMETRY.md) on top of a LiveSocket: reads the snapshot on
  // every (re)connect, on `resync` and whenever a node's seq skips, one read at a time, and
  // hands on only messages newer than what was shown. `query` (e.g. "?devices=3,7") goes to
  // both the socket and the snapshot. Handlers: snapshot(fresh, all) with the snapshot's
  // messages newer than those shown and all of them; telemetry(msg); nodeState(msg).
  function TelemetryStream(query, handlers) {
    var url = "/api/v1/telemetry/latest/" + query;
    var lastSeq = {}; // node name -> the last seq handed on
    var reading = false, readAgain = false;

    function snapshot() {
      if (reading) { readAgain = true; return; }
      reading = true;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) return;
          var fresh = data.nodes.filter(function (msg) {
            var last = lastSeq[msg.node];
            if (last !== undefined && msg.seq < last) return false;
            lastSeq[msg.node] = msg.seq;
            return true;
          });
          handlers.snapshot(fresh, data.nodes);
        })
        .catch(function () {})
        .then(function () {
          reading = false;
          if (readAgain) { readAgain = false; snapshot(); }
        });
    }

    // False for a message already handed on; a gap before this one means some were missed.
    function inSequence(msg) {
      var last = lastSeq[msg.node];
      if (last !== undefined && msg.seq <= last) return false;
      lastSeq[msg.node] = msg.seq;
      if (last !== undefined && msg.seq > last + 1) snapshot();
      return true;
    }

    new LiveSocket("/ws/telemetry/" + query, {
      snapshot: snapshot,
      telemetry: function (_, msg) { if (inSequence(msg)) handlers.telemetry(msg); },
      "node.state": function (_, msg) { if (inSequence(msg)) handlers.nodeState(msg); },
      resync: snapshot,
    });
  }

  // apps.core.domain.units.format_bytes, so live figures read like the server-rendered ones:
  // binary units, labelled as such.
  function filesize(bytes) {
    if (bytes == null) return "\u2014";
    var units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if (Math.abs(bytes) < 1024) return bytes + "\u00a0B";
    var value = bytes / 1024, unit = 0;
    while (Math.abs(Math.round(value * 10) / 10) >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toFixed(1) + "\u00a0" + units[unit];
  }

  // The pages' one time format (the `when` filter): 24-hour, whatever the browser's locale.
  function clock(date) {
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
  }

  window.MOC = window.MOC || {};
  window.MOC.LiveSocket = LiveSocket;
  window.MOC.TelemetryStream = TelemetryStream;
  window.MOC.filesize = filesize;
  window.MOC.clock = clock;
})();

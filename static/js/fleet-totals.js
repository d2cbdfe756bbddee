// The Overview's Fleet figures, recomputed from every node's latest telemetry message: the
// snapshot on each (re)connect and after a gap, then each message over /ws/telemetry/.
// Offline nodes leave the snapshot, so their devices leave the totals (as on the server).
(function () {
  "use strict";
  var block = document.getElementById("fleet-totals");
  if (!block || !window.MOC || !window.MOC.LiveSocket) return;
  var SNAPSHOT_URL = "/api/v1/telemetry/latest/";

  var nodes = {}; // node name → its latest telemetry message
  var lastSeq = {};

  // Django's filesizeformat, so the live figures read like the server-rendered ones.
  function size(bytes) {
    var units = ["KB", "MB", "GB", "TB", "PB"];
    if (bytes < 1024) return bytes + "\u00a0bytes";
    var value = bytes / 1024, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toFixed(1) + "\u00a0" + units[unit];
  }

  function set(name, text, title) {
    var el = block.querySelector('[data-total="' + name + '"]');
    if (!el) return;
    el.textContent = text;
    if (title !== undefined) el.title = title;
  }

  function render() {
    var count = 0, simulated = 0, used = 0, total = 0, utils = [], hottest = null;
    Object.keys(nodes).forEach(function (name) {
      nodes[name].devices.forEach(function (d) {
        count += 1;
        if (d.simulated) simulated += 1;
        if (d.mem_used_bytes != null) used += d.mem_used_bytes;
        if (d.mem_total_bytes != null) total += d.mem_total_bytes;
        if (d.gpu_util != null) utils.push(d.gpu_util);
        if (d.temperature_c != null && (!hottest || d.temperature_c > hottest.temperature_c)) {
          hottest = { node: name, device: d, temperature_c: d.temperature_c };
        }
      });
    });
    set("devices", String(count));
    set("simulated", simulated + " simulated");
    set("memory", size(used));
    set("memory-of", "of " + size(total) + (total ? " · " + Math.round(100 * used / total) + "%" : ""));
    set("util", utils.length ? Math.round(utils.reduce(function (a, b) { return a + b; }, 0) / utils.length) + "%" : "—");
    set("hottest", hottest ? Math.round(hottest.temperature_c) + " °C" : "—");
    set("hottest-name", hottest
      ? hottest.node + " · " + hottest.device.kind.toUpperCase() + " " + hottest.device.index : "no readings",
      hottest ? hottest.device.name : "");
  }

  var reading = false, readAgain = false;
  function snapshot() {
    if (reading) { readAgain = true; return; }
    reading = true;
    fetch(SNAPSHOT_URL, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        var fresh = {};
        data.nodes.forEach(function (msg) {
          // A message newer than the snapshot's may already have arrived: keep it.
          var kept = nodes[msg.node];
          fresh[msg.node] = kept && kept.seq > msg.seq ? kept : msg;
          lastSeq[msg.node] = Math.max(lastSeq[msg.node] || 0, msg.seq);
        });
        nodes = fresh;
        render();
      })
      .catch(function () {})
      .then(function () {
        reading = false;
        if (readAgain) { readAgain = false; snapshot(); }
      });
  }

  function inSequence(msg) {
    var last = lastSeq[msg.node];
    if (last !== undefined && msg.seq <= last) return false;
    lastSeq[msg.node] = msg.seq;
    if (last !== undefined && msg.seq > last + 1) snapshot();
    return true;
  }

  new window.MOC.LiveSocket("/ws/telemetry/", {
    snapshot: snapshot,
    telemetry: function (_, msg) {
      if (!inSequence(msg)) return;
      nodes[msg.node] = msg;
      render();
    },
    "node.state": function (_, msg) {
      if (!inSequence(msg) || msg.state !== "offline") return;
      delete nodes[msg.node];
      render();
    },
    resync: snapshot,
  });
})();

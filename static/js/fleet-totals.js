// The Overview's Fleet figures, recomputed from every node's latest telemetry message: the
// snapshot on each (re)connect and after a gap, then each message over /ws/telemetry/.
// Offline nodes leave the snapshot, so their devices leave the totals (as on the server).
(function () {
  "use strict";
  var block = document.getElementById("fleet-totals");
  if (!block || !window.MOC || !window.MOC.TelemetryStream) return;

  var nodes = {}; // node name → its latest telemetry message

  var size = window.MOC.filesize;

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

  new window.MOC.TelemetryStream("", {
    snapshot: function (fresh, all) {
      // Nodes absent from the snapshot went offline; a message newer than the snapshot's
      // may already have arrived: keep it.
      var next = {};
      all.forEach(function (msg) {
        var kept = nodes[msg.node];
        next[msg.node] = kept && kept.seq > msg.seq ? kept : msg;
      });
      nodes = next;
      render();
    },
    telemetry: function (msg) {
      nodes[msg.node] = msg;
      render();
    },
    nodeState: function (msg) {
      if (msg.state !== "offline") return;
      delete nodes[msg.node];
      render();
    },
  });
})();

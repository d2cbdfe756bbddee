// The GPUs pages (every node, one node, one device) kept live from /ws/telemetry/: figures,
// health and memory bars change with each message, and the Plotly charts grow in place.
// What MOC holds on each device (reserved memory, the placements in its bar) is re-read every
// few seconds from the page's holdings URL (apps.fleet.views.devices_live).
// The server renders the page whole; this only keeps it current (schema: docs/TELEMETRY.md).
(function () {
  "use strict";
  var source = document.getElementById("gpus-data");
  if (!source || !window.MOC || !window.MOC.TelemetryStream) return;
  var page = JSON.parse(source.textContent);
  var Plotly = window.Plotly;

  var LIVE_POINTS = 300; // the live window: about five minutes at the default 1 Hz
  var LIVE_SEED_MS = 5 * 60 * 1000;
  var GIB = 1024 * 1024 * 1024;
  var CONFIG = { displayModeBar: false, responsive: true };
  var METRICS = [
    { key: "gpu_util", unit: "%", scale: 1, range: [0, 100] },
    { key: "mem_used_bytes", unit: "GiB", scale: 1 / GIB },
    { key: "temperature_c", unit: "°C", scale: 1 },
    { key: "power_w", unit: "W", scale: 1 },
  ];
  // Badge tones, as the state machines in apps/fleet/domain/states.py declare them.
  var TONES = {
    healthy: "ok", degraded: "warn", unhealthy: "bad", unavailable: "bad",
    online: "ok", draining: "warn", offline: "bad",
  };

  var devices = {};
  page.devices.forEach(function (d) {
    d.row = document.querySelector('tr[data-device="' + d.id + '"]');
    d.used = d.mem_used_bytes;
    d.total = d.memory_total_bytes;
    devices[d.id] = d;
  });

  var groups = [];
  document.querySelectorAll("[data-chart-devices]").forEach(function (el) {
    var group = { ids: el.dataset.chartDevices.split(",").map(Number), charts: {} };
    METRICS.forEach(function (m) { group.charts[m.key] = el.querySelector('[data-metric="' + m.key + '"]'); });
    group.ids.forEach(function (id, i) {
      if (devices[id]) { devices[id].group = group; devices[id].trace = i; }
    });
    groups.push(group);
  });

  // ---- figures -----------------------------------------------------------------------------

  function capitalise(s) { return s.charAt(0).toUpperCase() + s.slice(1); }

  var size = window.MOC.filesize;

  function round(value, unit) { return value == null ? "—" : Math.round(value) + unit; }

  function setFig(row, name, text) {
    var el = row.querySelector('[data-fig="' + name + '"]');
    if (el && el.textContent !== text) el.textContent = text;
  }

  // A reading says why only when it could not be read at all; a device degraded for another
  // reason (heat, ECC) keeps the reason the server rendered until it is healthy again.
  function setHealth(row, state, reason) {
    var badge = row.querySelector('[data-fig="health"]');
    if (!badge || !state) return;
    badge.className = "badge " + (TONES[state] || "");
    badge.textContent = capitalise(state);
    if (reason || state === "healthy") {
      badge.title = reason || "";
      setFig(row, "error", reason || "");
    }
  }

  function otherTitle(dev, otherBytes) {
    var running = dev.jobs.length ? dev.jobs.map(function (j) { return j.label; }).join(", ") : "no MOC job";
    return "Not placed by MOC: " + size(otherBytes) + ". Running here: " + running;
  }

  // The same split as selectors.memory_segments(): placements, then what else is used, then free.
  function drawBar(dev, used, total) {
    var bar = dev.row.querySelector("[data-membar]");
    if (!bar) return;
    var placed = dev.placements.reduce(function (sum, p) { return sum + p.bytes; }, 0);
    var other = used == null ? 0 : Math.max(0, used - placed);
    var whole = Math.max(total, placed + other) || 1;
    var free = Math.max(0, total - placed - other);
    var width = function (bytes) { return (100 * bytes / whole).toFixed(2) + "%"; };
    bar.querySelectorAll('[data-seg="placement"]').forEach(function (seg, i) {
      if (dev.placements[i]) seg.style.width = width(dev.placements[i].bytes);
    });
    var otherSeg = bar.querySelector('[data-seg="other"]');
    if (otherSeg) { otherSeg.style.width = width(other); otherSeg.title = otherTitle(dev, other); }
    var freeSeg = bar.querySelector('[data-seg="free"]');
    if (freeSeg) { freeSeg.style.width = width(free); freeSeg.title = "Free: " + size(free); }
  }

  function showReading(dev, r, at) {
    var row = dev.row;
    if (!row) return;
    var total = r.mem_total_bytes == null ? dev.memory_total_bytes : r.mem_total_bytes;
    dev.used = r.mem_used_bytes;
    dev.total = total;
    setFig(row, "util", round(r.gpu_util, "%"));
    setFig(row, "mem", size(r.mem_used_bytes) + " / " + size(total));
    setFig(row, "temp", round(r.temperature_c, " °C"));
    setFig(row, "power", r.power_w == null ? "—"
      : Math.round(r.power_w) + (r.power_limit_w == null ? "" : " / " + Math.round(r.power_limit_w)) + " W");
    setFig(row, "at", "read at " + window.MOC.clock(at));
    setHealth(row, r.health, r.error);
    drawBar(dev, r.mem_used_bytes, total);
  }

  function nodeSections(name) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-node-name]"), function (el) {
      return el.dataset.nodeName === name;
    });
  }

  function setNodeState(name, state, reason) {
    nodeSections(name).forEach(function (section) {
      section.classList.toggle("offline", state === "offline");
      var badge = section.querySelector("[data-node-state]");
      if (badge) {
        badge.className = "badge " + (TONES[state] || "");
        badge.textContent = capitalise(state);
        badge.title = reason || "";
      }
      if (state === "offline") {
        section.querySelectorAll("tr[data-device]").forEach(function (row) {
          setHealth(row, "unavailable", "its node is offline");
        });
      }
    });
  }

  function showMessage(msg) {
    var at = new Date(msg.at * 1000);
    var unknown = false;
    var sections = nodeSections(msg.node);
    // A node that reports is up, whatever an earlier message said.
    if (sections.some(function (el) { return el.classList.contains("offline"); })) setNodeState(msg.node, "online", "");
    sections.forEach(function (section) {
      var seen = section.querySelector("[data-node-seen]");
      if (seen) seen.textContent = "seen at " + window.MOC.clock(at);
    });
    msg.devices.forEach(function (r) {
      var dev = devices[r.id];
      if (dev) showReading(dev, r, at);
      else unknown = true;
    });
    var hint = document.getElementById("new-devices");
    if (unknown && page.all && hint) hint.hidden = false;
  }

  // ---- what MOC holds ------------------------------------------------------------------------

  function placementTitle(p) { return p.label + " (" + p.state + "): " + size(p.bytes); }

  // The bar's placement stretches, made again when the placements changed (one came or went).
  function setPlacements(dev, placements) {
    var same = JSON.stringify(placements) === JSON.stringify(dev.placements);
    dev.placements = placements;
    var bar = dev.row && dev.row.querySelector("[data-membar]");
    if (same || !bar) return;
    bar.querySelectorAll('[data-seg="placement"]').forEach(function (seg) { seg.remove(); });
    var after = bar.querySelector('[data-seg="other"]');
    placements.forEach(function (p) {
      var seg = document.createElement(p.url ? "a" : "span");
      seg.className = "seg seg-placement";
      seg.dataset.seg = "placement";
      if (p.url) seg.href = p.url;
      seg.title = placementTitle(p);
      bar.insertBefore(seg, after);
    });
  }

  function showHoldings(fresh) {
    var dev = devices[fresh.id];
    if (!dev) return;
    dev.jobs = fresh.jobs;
    setPlacements(dev, fresh.placements);
    document.querySelectorAll('[data-reserved="' + fresh.id + '"]').forEach(function (el) {
      var text = size(fresh.reserved_bytes);
      if (el.textContent !== text) el.textContent = text;
    });
    if (dev.row) drawBar(dev, dev.used, dev.total);
  }

  var polling = false;
  function pollHoldings() {
    if (polling || document.hidden || !ids.length) return;
    polling = true;
    var query = ids.map(function (id) { return "device=" + id; }).join("&");
    fetch(page.holdings_url + "?" + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) data.devices.forEach(showHoldings); })
      .catch(function () {})
      .then(function () { polling = false; });
  }

  // ---- charts ------------------------------------------------------------------------------

  var range = "live";
  var generation = 0; // answers to an older range request are dropped

  function traceName(dev) { return dev.kind.toUpperCase() + " " + dev.index; }

  function traces(group, metric, series) {
    return group.ids.map(function (id, i) {
      var s = series ? series[i] : { x: [], y: [] };
      return {
        type: "scatter", mode: "lines+markers", marker: { size: 3 },
        name: devices[id] ? traceName(devices[id]) : String(id),
        x: s.x, y: s.y, connectgaps: false,
        hovertemplate: "%{y:.1f} " + metric.unit + "<extra>%{fullData.name}</extra>",
      };
    });
  }

  // A chart with nothing to show says so instead of drawing an axis around the year 2000.
  var EMPTY = [{ text: "no readings", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];

  function layout(group, metric, empty) {
    return {
      height: 200,
      margin: { l: 40, r: 8, t: 24, b: 28 },
      showlegend: group.ids.length > 1,
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      xaxis: { type: "date", nticks: 4, visible: !empty },
      yaxis: metric.range ? { range: metric.range } : { rangemode: "tozero" },
      annotations: empty ? EMPTY : [],
    };
  }

  function eachChart(fn) {
    groups.forEach(function (group) {
      METRICS.forEach(function (metric) {
        var el = group.charts[metric.key];
        if (el) fn(group, metric, el);
      });
    });
  }

  function drawEmpty() {
    eachChart(function (group, metric, el) {
      Plotly.react(el, traces(group, metric, null), layout(group, metric, true), CONFIG);
    });
  }

  function history(id, name) {
    var url = "/api/v1/devices/" + id + "/history/?range=" + name + "&metrics="
      + METRICS.map(function (m) { return m.key; }).join(",");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; });
  }

  // Live starts from the last five minutes of stored history, kept in front of whatever the
  // socket appended while the history was on its way; other ranges show stored history only.
  function load(name) {
    var gen = ++generation;
    var charted = [];
    groups.forEach(function (g) { charted = charted.concat(g.ids); });
    Promise.all(charted.map(function (id) { return history(id, name === "live" ? "15m" : name); })).then(function (answers) {
      if (gen !== generation) return;
      var byId = {};
      charted.forEach(function (id, i) { byId[id] = answers[i]; });
      var since = Date.now() - LIVE_SEED_MS;
      eachChart(function (group, metric, el) {
        var series = group.ids.map(function (id, i) {
          var points = (byId[id] && byId[id].metrics && byId[id].metrics[metric.key]) || [];
          var live = name === "live" ? el.data[i] : { x: [], y: [] };
          var firstLive = live.x.length ? +new Date(live.x[0]) : Infinity;
          var x = [], y = [];
          points.forEach(function (p) {
            var t = new Date(p[0]);
            if (name === "live" && (+t < since || +t >= firstLive)) return;
            x.push(t);
            y.push(p[1] == null ? null : p[1] * metric.scale);
          });
          return { x: x.concat(live.x), y: y.concat(live.y) };
        });
        var empty = series.every(function (s) { return !s.x.length; });
        Plotly.react(el, traces(group, metric, series), layout(group, metric, empty), CONFIG);
      });
    });
  }

  function setRange(name) {
    range = name;
    document.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.range === name));
    });
    if (name === "live") drawEmpty();
    load(name);
  }

  // While a history range is shown the figures stay live but the charts hold still.
  function appendToCharts(msg) {
    if (range !== "live") return;
    var at = new Date(msg.at * 1000);
    var byGroup = new Map();
    msg.devices.forEach(function (r) {
      var dev = devices[r.id];
      if (!dev || !dev.group) return;
      if (!byGroup.has(dev.group)) byGroup.set(dev.group, []);
      byGroup.get(dev.group).push({ trace: dev.trace, reading: r });
    });
    byGroup.forEach(function (entries, group) {
      METRICS.forEach(function (metric) {
        var el = group.charts[metric.key];
        if (!el || !el.data) return;
        var update = { x: [], y: [] };
        entries.forEach(function (e) {
          var v = e.reading[metric.key];
          update.x.push([at]);
          update.y.push([v == null ? null : v * metric.scale]);
        });
        if (el.layout.xaxis.visible === false) {
          Plotly.relayout(el, { "xaxis.visible": true, annotations: [] });
        }
        Plotly.extendTraces(el, update, entries.map(function (e) { return e.trace; }), LIVE_POINTS);
      });
    });
  }

  // ---- the socket and the snapshot -----------------------------------------------------------

  // A page that shows some devices asks for those only, from the socket and the snapshot.
  var ids = Object.keys(devices);
  var only = page.all || !ids.length ? "" : "?devices=" + ids.join(",");
  var charting = Boolean(Plotly && groups.length);
  if (charting) {
    document.querySelectorAll("[data-range]").forEach(function (b) {
      b.addEventListener("click", function () { setRange(b.dataset.range); });
    });
    setRange("live");
  }

  if (page.holdings_url && page.poll_s) setInterval(pollHoldings, page.poll_s * 1000);

  new window.MOC.TelemetryStream(only, {
    snapshot: function (fresh) { fresh.forEach(showMessage); },
    telemetry: function (msg) {
      showMessage(msg);
      if (charting) appendToCharts(msg);
    },
    nodeState: function (msg) { setNodeState(msg.node, msg.state, msg.reason); },
  });
})();

// A deployment's page kept live from /ws/deployments/<name>/ (apps/deployments/consumers.py):
// - "deployment.figures": 5-second points per release (apps/deployments/domain/series.py's
//   Point.to_dict), merged by bucket start into the Plotly charts, one line per release (two
//   where a chart shows p50 and p99; one per refusal reason on the refusals chart);
// - "deployment.anomalies": the figures that drifted from their baseline, as the badge;
// - "release.changed" and "verification.check": the live part of the page (split, release
//   timeline, verification runs) is read again from the server, as on every (re)connect.
// The range buttons: 15 min is drawn from the pushes; longer ranges are read from the figures
// API (?range=, the per-minute rollup) and read again every minute while shown.
(function () {
  "use strict";
  var source = document.getElementById("deployment-data");
  if (!source || !window.MOC || !window.MOC.LiveSocket) return;
  var page = JSON.parse(source.textContent);
  var Plotly = window.Plotly;

  var WINDOW_S = 900; // the live charts' span, as the consumer's snapshot
  var LIVE = "15m";
  var HISTORY_EVERY_MS = 60000;
  var CONFIG = { displayModeBar: false, responsive: true };
  // Each chart's fields of a point: one trace per release and field.
  var METRICS = {
    rps: ["rps"],
    error_rate: ["error_rate"],
    p50: ["p50_ms"],
    p99: ["p99_ms"],
    ttft: ["ttft_p50_ms", "ttft_p99_ms"],
    itl: ["itl_p50_ms", "itl_p99_ms"],
    tokens: ["tokens_per_s"],
    queue: ["queue_p50_ms", "queue_p99_ms"],
    goodput: ["goodput"],
  };
  var REFUSALS = "refusals";
  var EMPTY = [{ text: "no requests yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];

  var live = {}; // id -> {label, points: {start: point}}
  var history = null; // {bucket_s, releases: same shape} while a longer range is shown
  var range = LIVE;
  var generation = 0; // answers for a range no longer shown are dropped
  var timer = null;

  function merge(payload) {
    payload.releases.forEach(function (r) {
      var known = live[r.id] || (live[r.id] = { label: r.label, points: {} });
      r.points.forEach(function (p) { known.points[p.t] = p; });
    });
    var oldest = Date.now() / 1000 - WINDOW_S;
    Object.keys(live).forEach(function (id) {
      var points = live[id].points;
      Object.keys(points).forEach(function (t) { if (Number(t) < oldest) delete points[t]; });
      if (!Object.keys(points).length) delete live[id];
    });
  }

  function value(point, field) {
    var v = point[field];
    if (v == null) return null;
    return field === "error_rate" ? v * 100 : v;
  }

  function starts(points) {
    return Object.keys(points).map(Number).sort(function (a, b) { return a - b; });
  }

  function dates(ts) { return ts.map(function (t) { return new Date(t * 1000); }); }

  // One trace per release and field; on the refusals chart, one per reason (all releases).
  function traces(shown, metric, bucketS) {
    var ids = Object.keys(shown).sort(function (a, b) { return a - b; });
    if (metric === REFUSALS) {
      var byReason = {};
      ids.forEach(function (id) {
        var points = shown[id].points;
        starts(points).forEach(function (t) {
          var p = points[t], named = 0;
          Object.keys(p.refusals || {}).forEach(function (reason) {
            var counts = byReason[reason] = byReason[reason] || {};
            counts[t] = (counts[t] || 0) + p.refusals[reason];
            named += p.refusals[reason];
          });
          var other = (p.refused || 0) - named;
          var o = byReason.other = byReason.other || {};
          o[t] = (o[t] || 0) + Math.max(0, other);
        });
      });
      return Object.keys(byReason).sort().filter(function (reason) {
        return reason !== "other" || Object.keys(byReason.other).some(function (t) { return byReason.other[t] > 0; });
      }).map(function (reason) {
        var ts = starts(byReason[reason]);
        return { name: reason, type: "scatter", mode: "lines", x: dates(ts),
          y: ts.map(function (t) { return byReason[reason][t] / bucketS; }) };
      });
    }
    var fields = METRICS[metric] || [];
    var out = [];
    ids.forEach(function (id) {
      var points = shown[id].points;
      var ts = starts(points);
      fields.forEach(function (field) {
        out.push({
          name: shown[id].label + (fields.length > 1 ? " " + field.split("_")[1] : ""),
          type: "scatter",
          mode: "lines",
          connectgaps: false,
          line: fields.length > 1 && field.indexOf("p50") >= 0 ? { dash: "dot" } : {},
          x: dates(ts),
          y: ts.map(function (t) { return value(points[t], field); }),
        });
      });
    });
    return out;
  }

  function draw() {
    var shown = range === LIVE ? live : (history ? history.releases : {});
    var bucketS = range === LIVE ? 5 : (history ? history.bucket_s : 60);
    // Empty until some release was asked: an error rate of 0 is a value, not nothing.
    var empty = !Object.keys(shown).some(function (id) {
      var points = shown[id].points;
      return Object.keys(points).some(function (t) { return points[t].requests > 0 || points[t].refused > 0; });
    });
    document.querySelectorAll("#deployment-charts [data-metric]").forEach(function (el) {
      var drawn = traces(shown, el.dataset.metric, bucketS);
      Plotly.react(el, drawn, {
        height: 200,
        margin: { l: 40, r: 8, t: 24, b: 28 },
        showlegend: drawn.length > 1,
        legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
        xaxis: { type: "date", nticks: 4, visible: !empty },
        yaxis: { rangemode: "tozero" },
        annotations: empty ? EMPTY : [],
      }, CONFIG);
    });
  }

  function showAnomalies(payload) {
    var box = document.getElementById("serving-anomalies");
    if (!box) return;
    box.textContent = "";
    payload.anomalies.forEach(function (a) {
      var badge = document.createElement("span");
      badge.className = "badge warn";
      badge.dataset.figure = a.figure;
      badge.title = a.reason;
      badge.textContent = "\u26a0 " + a.figure + " " + (a.direction === "up" ? "\u2191" : "\u2193");
      box.appendChild(badge);
      box.appendChild(document.createTextNode(" "));
    });
  }

  function readHistory(name) {
    var mine = ++generation;
    if (!window.fetch) return;
    window.fetch(page.figures + "?range=" + encodeURIComponent(name), {
      credentials: "same-origin", headers: { Accept: "application/json" },
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
      if (!data || mine !== generation || range !== name) return;
      var releases = {};
      data.releases.forEach(function (r) {
        var points = {};
        r.series.forEach(function (p) { points[p.t] = p; });
        releases[r.id] = { label: r.version.model + " v" + r.version.number + " (#" + r.id + ")", points: points };
      });
      history = { bucket_s: data.bucket_s, releases: releases };
      showAnomalies(data);
      if (Plotly) draw();
    }, function () {});
  }

  function setRange(name) {
    range = name;
    history = null;
    generation++;
    if (timer) { clearInterval(timer); timer = null; }
    document.querySelectorAll("#figure-ranges [data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.range === name));
    });
    if (name !== LIVE) {
      readHistory(name);
      timer = setInterval(function () { readHistory(name); }, HISTORY_EVERY_MS);
    }
    if (Plotly) draw();
  }

  document.querySelectorAll("#figure-ranges [data-range]").forEach(function (b) {
    b.addEventListener("click", function () { setRange(b.dataset.range); });
  });

  // The live part is read again whole; folded details the user opened stay open.
  var reading = false, readAgain = false;
  function refresh() {
    if (!window.htmx) return;
    if (reading) { readAgain = true; return; }
    reading = true;
    var open = Array.prototype.map.call(
      document.querySelectorAll("#deployment-live details[open]"), function (d) { return d.id; });
    window.htmx.ajax("GET", page.url, { target: "#deployment-live", swap: "outerHTML" }).then(function () {
      open.forEach(function (id) { var d = id && document.getElementById(id); if (d) d.open = true; });
    }, function () {}).then(function () {
      reading = false;
      if (readAgain) { readAgain = false; refresh(); }
    });
  }

  if (Plotly) draw();
  new window.MOC.LiveSocket(page.ws, {
    snapshot: refresh,
    "release.changed": refresh,
    "verification.check": refresh,
    "deployment.figures": function (payload) {
      merge(payload);
      if (Plotly && range === LIVE) draw();
    },
    "deployment.anomalies": showAnomalies,
  });
})();

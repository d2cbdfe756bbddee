// A deployment's page kept live from /ws/deployments/<name>/ (apps/deployments/consumers.py):
// - "deployment.figures": 5-second buckets per release, merged by bucket start into four Plotly
//   charts (requests per second, p50, p99, error rate), one line per release;
// - "release.changed" and "verification.check": the live part of the page (split, release
//   timeline, verification runs) is read again from the server, as on every (re)connect.
(function () {
  "use strict";
  var source = document.getElementById("deployment-data");
  if (!source || !window.MOC || !window.MOC.LiveSocket) return;
  var page = JSON.parse(source.textContent);
  var Plotly = window.Plotly;

  var WINDOW_S = 600; // the charts' span, as the consumer's snapshot
  var CONFIG = { displayModeBar: false, responsive: true };
  // Each chart's column in a point: [start, rps, p50, p99, error rate, requests].
  var METRICS = { rps: 1, p50: 2, p99: 3, error_rate: 4 };
  var REQUESTS = 5;
  var EMPTY = [{ text: "no requests yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];

  var releases = {}; // id -> {label, points: {start: point}}

  function merge(payload) {
    payload.releases.forEach(function (r) {
      var known = releases[r.id] || (releases[r.id] = { label: r.label, points: {} });
      r.points.forEach(function (p) { known.points[p[0]] = p; });
    });
    var oldest = Date.now() / 1000 - WINDOW_S;
    Object.keys(releases).forEach(function (id) {
      var points = releases[id].points;
      Object.keys(points).forEach(function (t) { if (Number(t) < oldest) delete points[t]; });
      if (!Object.keys(points).length) delete releases[id];
    });
  }

  function value(point, column) {
    var v = point[column];
    if (v == null) return null;
    return column === METRICS.error_rate ? v * 100 : v;
  }

  function draw() {
    var ids = Object.keys(releases).sort(function (a, b) { return a - b; });
    document.querySelectorAll("#deployment-charts [data-metric]").forEach(function (el) {
      var column = METRICS[el.dataset.metric];
      var traces = ids.map(function (id) {
        var points = releases[id].points;
        var starts = Object.keys(points).map(Number).sort(function (a, b) { return a - b; });
        return {
          name: releases[id].label,
          type: "scatter",
          mode: "lines",
          connectgaps: false,
          x: starts.map(function (t) { return new Date(t * 1000); }),
          y: starts.map(function (t) { return value(points[t], column); }),
        };
      });
      // Empty until some release was asked: an error rate of 0 is a value, not nothing.
      var empty = !ids.some(function (id) {
        var points = releases[id].points;
        return Object.keys(points).some(function (t) { return points[t][REQUESTS] > 0; });
      });
      Plotly.react(el, traces, {
        height: 200,
        margin: { l: 40, r: 8, t: 24, b: 28 },
        showlegend: ids.length > 1,
        legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
        xaxis: { type: "date", nticks: 4, visible: !empty },
        yaxis: { rangemode: "tozero" },
        annotations: empty ? EMPTY : [],
      }, CONFIG);
    });
  }

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
      if (Plotly) draw();
    },
  });
})();

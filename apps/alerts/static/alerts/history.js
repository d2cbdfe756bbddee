// The history page's charts (apps/alerts/reports.py history_summary): alerts fired per day, stacked
// by rule, and the time each rule spent firing.
(function () {
  "use strict";
  var source = document.getElementById("alert-history");
  var Plotly = window.Plotly;
  if (!source || !Plotly) return;
  var summary = JSON.parse(source.textContent);
  var CONFIG = { displayModeBar: false, responsive: true };
  document.getElementById("history-per-day").textContent = "";  // the no-JavaScript placeholder
  var perDay = summary.rules.map(function (r) {
    return { type: "bar", name: r.name, x: summary.dates, y: r.per_day };
  });
  Plotly.newPlot("history-per-day", perDay, {
    barmode: "stack", margin: { t: 10, r: 10, b: 40, l: 40 }, yaxis: { title: "alerts fired" },
  }, CONFIG);
  // Hours read badly for alerts that fired for a minute or two: minutes below two hours in all.
  var longest = Math.max.apply(null, summary.rules.map(function (r) { return r.firing_s; }).concat([0]));
  var unit = longest >= 7200 ? { s: 3600, title: "hours firing" } : { s: 60, title: "minutes firing" };
  Plotly.newPlot("history-firing", [{
    type: "bar", orientation: "h",
    y: summary.rules.map(function (r) { return r.name; }),
    x: summary.rules.map(function (r) { return r.firing_s / unit.s; }),
  }], {
    margin: { t: 10, r: 10, b: 40, l: 160 }, xaxis: { title: unit.title }, yaxis: { autorange: "reversed" },
  }, CONFIG);
})();

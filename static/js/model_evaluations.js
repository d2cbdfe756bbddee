// A model page's evaluations compared across its versions: one Plotly chart per figure (eval
// loss, perplexity, exact match), a line per evaluation key (a dataset's split, a golden set) and the
// data it was measured on, over the versions evaluated on it: like is only drawn against like.
// The data is the page's "evaluations-data" (apps.models.domain.measured.evaluation_charts); the
// table beside the charts shows the same figures without JavaScript.
(function () {
  "use strict";
  var source = document.getElementById("evaluations-data");
  var Plotly = window.Plotly;
  if (!source || !Plotly) return;
  var charts = JSON.parse(source.textContent);
  var CONFIG = { displayModeBar: false, responsive: true };

  charts.forEach(function (chart) {
    var el = document.getElementById("evaluations-chart-" + chart.figure);
    if (!el) return;
    el.textContent = "";
    var traces = chart.series.map(function (s) {
      return { name: s.label || s.key, x: s.x, y: s.y, type: "scatter", mode: "lines+markers" };
    });
    Plotly.react(el, traces, {
      title: { text: chart.title, font: { size: 13 } },
      height: 240,
      margin: { l: 48, r: 8, t: 32, b: 32 },
      legend: { orientation: "h", x: 0, y: -0.2 },
      xaxis: { type: "category", title: { text: "version" } },
    }, CONFIG);
  });
})();

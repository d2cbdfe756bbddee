// The rule editor (apps/alerts/templates/alerts/rule_form.html): shows the fields of the rule's kind,
// the chosen metric's help, unit and labels (the catalogue, apps/alerts/domain/catalog.py), suggests
// matchers from the labels' current values (GET /alerts/rules/label-values/), and previews the
// unsaved rule: POST /api/v1/alert-rules/preview/ replays it over the last day of stored samples,
// drawn with Plotly (each series, the threshold, a band where an alert would have fired) and listed.
(function () {
  "use strict";
  var form = document.getElementById("rule-form");
  var source = document.getElementById("alert-catalog");
  if (!form || !source) return;
  var catalog = JSON.parse(source.textContent);
  var THRESHOLD_ONLY = ["metric", "op", "threshold", "for_seconds", "matchers"];
  var EVENT_ONLY = ["event"];

  function field(name) { return form.elements.namedItem(name); }
  function box(name) { return document.getElementById("field-" + name); }
  function csrf() { return form.elements.namedItem("csrfmiddlewaretoken").value; }

  function showKind() {
    var event = field("kind").value === "event";
    THRESHOLD_ONLY.forEach(function (n) { if (box(n) && n !== "matchers") box(n).hidden = event; });
    EVENT_ONLY.forEach(function (n) { if (box(n)) box(n).hidden = !event; });
    document.getElementById("rule-preview").hidden = event;
  }

  function showMetric() {
    var spec = catalog[field("metric").value];
    var help = document.getElementById("metric-help");
    var labels = document.getElementById("matcher-labels");
    var values = document.getElementById("matcher-values");
    values.textContent = "";
    if (!spec) { help.textContent = ""; labels.textContent = ""; return; }
    help.textContent = spec.help + (spec.unit ? " Unit: " + spec.unit + "." : "") +
      (spec.history ? "" : " MOC keeps no history of it: no preview.");
    labels.textContent = "Labels: " + spec.labels.join(", ");
    fetch("/alerts/rules/label-values/?metric=" + encodeURIComponent(field("metric").value),
      { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        Object.keys(data.labels).forEach(function (label) {
          data.labels[label].forEach(function (value) {
            var option = document.createElement("option");
            option.value = label + '="' + value + '"';
            values.appendChild(option);
          });
        });
      })
      .catch(function () {});
  }

  function minutes(s) { return Math.round(s / 60); }

  function clock(iso) {
    var d = new Date(iso);
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return two(d.getHours()) + ":" + two(d.getMinutes());
  }

  function rulePayload() {
    var data = {};
    ["name", "metric", "op", "threshold", "for_seconds", "keep_firing_seconds", "severity", "matchers"]
      .forEach(function (n) { var el = field(n); if (el && el.value !== "") data[n] = el.value; });
    data.threshold = data.threshold === undefined ? "" : data.threshold;
    data.threshold = data.threshold === "" ? null : Number(data.threshold);
    data.for_seconds = Number(data.for_seconds || 0);
    data.keep_firing_seconds = Number(data.keep_firing_seconds || 0);
    return data;
  }

  function say(result, text, cls) {
    result.textContent = "";
    var p = document.createElement("p");
    if (cls) p.className = cls;
    p.textContent = text;
    result.appendChild(p);
  }

  function draw(data, threshold) {
    var chart = document.getElementById("rule-preview-chart");
    var Plotly = window.Plotly;
    if (!Plotly) return;
    chart.hidden = false;
    var traces = data.series.map(function (s) {
      var name = Object.keys(s.labels).map(function (k) { return k + "=" + s.labels[k]; }).join(", ");
      return {
        x: s.points.map(function (p) { return p[0]; }), y: s.points.map(function (p) { return p[1]; }),
        mode: "lines", name: name || data.metric,
      };
    });
    var shapes = [];
    if (threshold !== null) {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: threshold, y1: threshold,
        line: { color: "#c53030", dash: "dash", width: 1 } });
    }
    data.alerts.forEach(function (a) {
      if (!a.fired_at) return;
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: a.fired_at, x1: a.resolved_at || data.until,
        y0: 0, y1: 1, fillcolor: "rgba(197,48,48,0.12)", line: { width: 0 } });
    });
    Plotly.react(chart, traces, {
      margin: { t: 10, r: 10, b: 40, l: 50 }, shapes: shapes, showlegend: traces.length <= 12,
      xaxis: { type: "date" }, yaxis: { title: data.metric },
    }, { displayModeBar: false, responsive: true });
  }

  function list(result, data) {
    var fired = data.alerts.filter(function (a) { return a.fired_at; });
    var total = fired.reduce(function (sum, a) {
      return sum + (new Date(a.resolved_at || data.until) - new Date(a.fired_at)) / 1000;
    }, 0);
    say(result, fired.length
      ? "Would have fired " + fired.length + " time" + (fired.length === 1 ? "" : "s") + ", " +
        minutes(total) + " min in all, over the last day."
      : "Would not have fired over the last day" +
        (data.alerts.length ? " (" + data.alerts.length + " pending, none long enough)." : "."));
    if (!fired.length) return;
    var ul = document.createElement("ul");
    fired.forEach(function (a) {
      var li = document.createElement("li");
      var labels = Object.keys(a.labels).map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
      li.textContent = clock(a.fired_at) + " → " + (a.resolved_at ? clock(a.resolved_at) : "still firing") +
        " · peak " + a.peak_value + (labels ? " · " + labels : "");
      ul.appendChild(li);
    });
    result.appendChild(ul);
  }


  function preview() {
    var result = document.getElementById("rule-preview-result");
    var payload = rulePayload();
    say(result, "Replaying the last day…", "muted");
    fetch("/api/v1/alert-rules/preview/", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(payload),
    })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (!res.ok) {
          say(result, Object.keys(res.body).map(function (k) {
            return k + ": " + [].concat(res.body[k]).join(" ");
          }).join(" · "), "error");
          return;
        }
        if (!res.body.history) { say(result, res.body.reason || "MOC keeps no history of this metric.", "muted"); return; }
        list(result, res.body);
        draw(res.body, payload.threshold);
      })
      .catch(function () { say(result, "The preview could not be read; try again.", "error"); });
  }

  field("kind").addEventListener("change", showKind);
  field("metric").addEventListener("change", showMetric);
  document.getElementById("rule-preview").addEventListener("click", preview);
  showKind();
  if (field("metric").value) showMetric();
})();

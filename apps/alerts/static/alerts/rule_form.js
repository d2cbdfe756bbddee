// The rule editor (apps/alerts/templates/alerts/rule_form.html): shows the fields of the rule's kind
// (and clears the other kind's when the kind changes; a field with an error always stays shown),
// the chosen metric's help, unit and labels (the catalogue, apps/alerts/domain/catalog.py) or the
// chosen event's labels, suggests matchers from a metric's labels' current values
// (GET /alerts/rules/label-values/; a picked one is added to the matchers), and previews the
// unsaved rule: POST /api/v1/alert-rules/preview/ replays it over the last day of stored samples,
// drawn with Plotly (each series, the threshold, a band where an alert would have fired) and listed.
(function () {
  "use strict";
  var form = document.getElementById("rule-form");
  var source = document.getElementById("alert-catalog");
  if (!form || !source) return;
  var catalog = JSON.parse(source.textContent);
  var eventLabels = JSON.parse(document.getElementById("alert-event-labels").textContent);
  var THRESHOLD_ONLY = ["metric", "op", "threshold", "for_seconds"];
  var EVENT_ONLY = ["event"];
  // What a field of the other kind is reset to when the kind changes (as a new rule has it).
  var BLANK = { metric: "", op: ">", threshold: "", for_seconds: "0", event: "" };

  function field(name) { return form.elements.namedItem(name); }
  function box(name) { return document.getElementById("field-" + name); }
  function csrf() { return form.elements.namedItem("csrfmiddlewaretoken").value; }

  function isEvent() { return field("kind").value === "event"; }

  // A box holding an error is never hidden: the error would be invisible and "Save" seem to do nothing.
  function hide(name, hidden) {
    var b = box(name);
    if (b) b.hidden = hidden && !b.querySelector(".error");
  }

  function showKind() {
    var event = isEvent();
    THRESHOLD_ONLY.forEach(function (n) { hide(n, event); });
    EVENT_ONLY.forEach(function (n) { hide(n, !event); });
    document.getElementById("rule-preview").hidden = event;
  }

  // The kind changed: the other kind's fields are emptied (the server refuses them, and blanks them).
  function changeKind() {
    (isEvent() ? THRESHOLD_ONLY : EVENT_ONLY).forEach(function (n) {
      var el = field(n);
      if (el) el.value = BLANK[n];
    });
    showKind();
    showLabels();
  }

  function showEvent() {
    var names = eventLabels[field("event").value];
    document.getElementById("matcher-values").textContent = "";
    document.getElementById("matcher-labels").textContent = names ? "Labels: " + names.join(", ") : "";
  }

  function showLabels() {
    if (isEvent()) showEvent(); else showMetric();
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

  // A suggestion picked (or typed out whole), or what was typed there when it is left, is added to
  // the matchers, never put in their place.
  function addMatcher(ev) {
    var suggest = document.getElementById("matcher-suggest");
    var picked = suggest.value.trim();
    var known = Array.prototype.some.call(document.getElementById("matcher-values").options,
      function (o) { return o.value === picked; });
    if (!picked || (ev.type === "input" && !known)) return;
    var matchers = field("matchers");
    var text = matchers.value.trim().replace(/,\s*$/, "");
    matchers.value = text ? text + ", " + picked : picked;
    suggest.value = "";
  }

  // The API's error body ({error, detail, fields: {field: [messages]}}), as a sentence.
  function problem(body) {
    var fields = body && body.fields;
    var names = fields ? Object.keys(fields) : [];
    if (names.length) {
      return names.map(function (k) { return k + ": " + [].concat(fields[k]).join(" "); }).join(" · ");
    }
    return (body && body.detail) || "The preview was refused.";
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
    // Name each series by the labels that tell it from the others (all of them when it is alone
    // would crowd the chart out: a device's uuid and model name are long).
    var varying = {};
    data.series.forEach(function (s) {
      Object.keys(s.labels).forEach(function (k) {
        if (data.series.some(function (o) { return o.labels[k] !== s.labels[k]; })) varying[k] = true;
      });
    });
    var traces = data.series.map(function (s) {
      var keys = Object.keys(s.labels).filter(function (k) { return varying[k]; });
      if (!keys.length) keys = Object.keys(s.labels).filter(function (k) { return k === "node" || k === "device" || k === "deployment"; });
      var name = keys.map(function (k) { return k + "=" + s.labels[k]; }).join(", ");
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
      legend: { orientation: "h", y: -0.2 },
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
        if (!res.ok) { say(result, problem(res.body), "error"); return; }
        if (!res.body.history) { say(result, res.body.reason || "MOC keeps no history of this metric.", "muted"); return; }
        list(result, res.body);
        draw(res.body, payload.threshold);
      })
      .catch(function () { say(result, "The preview could not be read; try again.", "error"); });
  }

  field("kind").addEventListener("change", changeKind);
  field("metric").addEventListener("change", showMetric);
  field("event").addEventListener("change", showEvent);
  document.getElementById("matcher-suggest").addEventListener("input", addMatcher);
  document.getElementById("matcher-suggest").addEventListener("change", addMatcher);
  document.getElementById("matcher-suggest").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { ev.preventDefault(); addMatcher(ev); } // add it, do not submit the form
  });
  document.getElementById("rule-preview").addEventListener("click", preview);
  showKind();
  if (isEvent() || field("metric").value) showLabels();
})();

// A job's page kept live from /ws/jobs/<id>/ (apps/jobs/consumers.py, payload: apps/jobs/live.py):
// every "job.update" moves the progress bar, step, ETA, tokens/s and memory, appends the new log
// lines and metric points (the loss curves grow in place) and redraws the checkpoints. Each batch
// of points and lines says which id it follows: one that follows an id this page has not seen
// means some were missed, and the page reads its snapshot again (as on every (re)connect).
// While the socket is live the page's fallback poll (htmx, for browsers without JavaScript)
// stands down; when the job ends the page's server-rendered part is read once more.
(function () {
  "use strict";
  var source = document.getElementById("job-data");
  if (!source || !window.MOC || !window.MOC.LiveSocket) return;
  var page = JSON.parse(source.textContent);
  var Plotly = window.Plotly;
  var size = window.MOC.filesize;

  var LOG_MAX = 200; // apps.jobs.live.LOG_TAIL
  var CONFIG = { displayModeBar: false, responsive: true };

  var cursor = null; // {metric, event}: the last point and line shown; null until the snapshot
  var series = {}; // name -> {steps: [], values: []}
  var reading = false, readAgain = false;
  var refreshing = false, ended = false;

  function byId(id) { return document.getElementById(id); }

  function setText(id, text) {
    var el = byId(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function isLive() {
    var status = byId("live-status");
    return status && status.dataset.state === "live";
  }

  // The fallback poll stands down while the socket is live; the refresh at the end goes through.
  document.body.addEventListener("htmx:beforeRequest", function (ev) {
    var elt = ev.detail && ev.detail.elt;
    if (elt && elt.id === "job-live" && isLive() && !refreshing) ev.preventDefault();
  });

  function showRow(p) {
    var state = byId("job-state");
    if (state) {
      var badge = '<span class="badge ' + p.tone + '"></span>';
      if (!state.firstElementChild || state.firstElementChild.textContent !== p.state_label) {
        state.innerHTML = badge;
        state.firstElementChild.textContent = p.state_label;
      }
    }
    var bar = byId("job-progress");
    if (bar) { bar.value = p.percent / 100; bar.textContent = p.percent + "%"; }
    setText("job-percent", p.percent + "%");
    setText("job-steps", p.total_steps ? "· step " + p.step + " of " + p.total_steps : "");
    setText("job-eta", p.eta ? "· " + p.eta + " left" : "");
    setText("job-tps", p.tokens_per_s ? "· " + Math.round(p.tokens_per_s) + " tokens/s" : "");
    setText("job-message", p.message ? "· " + p.message : "");
    if (p.memory_bytes != null) setText("job-memory", size(p.memory_bytes));
    var output = byId("job-output");
    if (output && p.output_version && !output.querySelector("a")) {
      var a = document.createElement("a");
      a.href = p.output_version.url;
      a.textContent = p.output_version.label;
      output.textContent = "";
      output.appendChild(a);
    }
  }

  function showCheckpoints(rows) {
    var body = document.querySelector("#job-checkpoints tbody");
    if (!body) return;
    if (!rows.length) return; // the server's empty row stays
    body.textContent = "";
    rows.forEach(function (c) { // [step, size_bytes, reason, at]
      var tr = document.createElement("tr");
      [String(c[0]), size(c[1]), c[2], window.MOC.clock(new Date(c[3])), ""].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function addLines(items) {
    var body = document.querySelector("#job-log tbody");
    if (!body || !items.length) return;
    var empty = byId("job-log-empty");
    if (empty) empty.remove();
    items.forEach(function (line) { // [id, at, level, tone, message]
      var tr = document.createElement("tr");
      var at = document.createElement("td");
      at.title = line[1];
      at.textContent = window.MOC.clock(new Date(line[1]));
      var level = document.createElement("td");
      var badge = document.createElement("span");
      badge.className = "badge " + line[3];
      badge.textContent = line[2];
      level.appendChild(badge);
      var message = document.createElement("td");
      message.textContent = line[4];
      tr.appendChild(at); tr.appendChild(level); tr.appendChild(message);
      body.appendChild(tr);
    });
    while (body.children.length > LOG_MAX) body.removeChild(body.firstElementChild);
  }

  function addPoints(items) {
    items.forEach(function (p) { // [id, name, step, value]
      var s = series[p[1]] || (series[p[1]] = { steps: [], values: [] });
      s.steps.push(p[2]);
      s.values.push(p[3]);
    });
  }

  function draw() {
    var el = byId("job-loss-chart");
    if (!el || !Plotly) return;
    var names = Object.keys(series).filter(function (n) { return n.indexOf("loss") !== -1; }).sort();
    if (!names.length) return;
    if (!el.dataset.drawn) { el.textContent = ""; el.dataset.drawn = "1"; }
    var traces = names.map(function (name) {
      var eval_ = name.indexOf("eval") === 0;
      return {
        name: name, x: series[name].steps, y: series[name].values, type: "scatter",
        mode: eval_ ? "lines+markers" : "lines",
      };
    });
    Plotly.react(el, traces, {
      height: 260,
      margin: { l: 48, r: 8, t: 24, b: 36 },
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      xaxis: { title: { text: "step" } },
      yaxis: { title: { text: "loss" } },
    }, CONFIG);
  }

  // The page's part the server renders (result, buttons), read once when the job ends.
  function refreshOnce() {
    if (ended || !window.htmx) return;
    ended = true;
    refreshing = true;
    window.htmx.ajax("GET", location.pathname, { target: "#job-live", swap: "outerHTML" })
      .then(function () { refreshing = false; }, function () { refreshing = false; });
  }

  function apply(p, fresh) {
    if (fresh) {
      series = {};
      var body = document.querySelector("#job-log tbody");
      if (body) body.textContent = "";
    }
    showRow(p);
    addPoints(p.metrics.items);
    addLines(p.log.items);
    showCheckpoints(p.checkpoints);
    cursor = { metric: p.metrics.until, event: p.log.until };
    draw();
    if (p.terminal) refreshOnce();
  }

  function snapshot() {
    if (reading) { readAgain = true; return; }
    reading = true;
    fetch(page.snapshot, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) apply(data, true); })
      .catch(function () {})
      .then(function () {
        reading = false;
        if (readAgain) { readAgain = false; snapshot(); }
      });
  }

  function update(p) {
    if (cursor === null || reading) { snapshot(); return; }
    if (p.metrics.after > cursor.metric || p.log.after > cursor.event) { snapshot(); return; }
    var metric = cursor.metric, event = cursor.event;
    p.metrics.items = p.metrics.items.filter(function (i) { return i[0] > metric; });
    p.log.items = p.log.items.filter(function (i) { return i[0] > event; });
    showRow(p);
    addPoints(p.metrics.items);
    addLines(p.log.items);
    showCheckpoints(p.checkpoints);
    cursor = { metric: Math.max(metric, p.metrics.until), event: Math.max(event, p.log.until) };
    if (p.metrics.items.length) draw();
    if (p.terminal) refreshOnce();
  }

  new window.MOC.LiveSocket(page.socket, { snapshot: snapshot, "job.update": update });
})();

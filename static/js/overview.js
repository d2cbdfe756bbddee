(function () {
  "use strict";
  var list = document.getElementById("events");
  if (!list) return;
  var MAX = 15;

  function item(e) {
    var li = document.createElement("li");
    var t = document.createElement("time");
    t.dateTime = e.at || "";
    t.textContent = e.at ? new Date(e.at).toISOString().substring(11, 19) : "";
    var who = document.createElement("b");
    who.textContent = e.actor;
    var action = document.createElement("span");
    action.className = "tag";
    action.textContent = e.action;
    var via = document.createElement("span");
    via.className = "muted";
    via.textContent = "via " + e.source;
    li.append(t, " ", who, " ", action, " " + (e.object || "") + " ", via);
    return li;
  }

  function snapshot() {
    fetch(list.dataset.snapshotUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        list.replaceChildren.apply(list, data.results.map(function (e) {
          return item({ at: e.created_at, actor: e.actor_label, action: e.action, object: e.object_repr, source: e.source });
        }));
      });
  }

  new window.MOC.LiveSocket("/ws/activity/", {
    snapshot: snapshot,
    "activity.event": function (e) {
      var empty = list.querySelector("[data-empty]");
      if (empty) empty.remove();
      list.prepend(item(e));
      while (list.children.length > MAX) list.lastElementChild.remove();
    },
  });
})();

// Jobs finished per hour, stacked by outcome (drawn with Plotly, served from the plotly package).
(function () {
  "use strict";
  var target = document.getElementById("job-activity");
  var source = document.getElementById("job-activity-data");
  if (!target || !source || !window.Plotly) return;
  var data = JSON.parse(source.textContent);
  var colours = { succeeded: "#1f8a4c", failed: "#c53030", cancelled: "#8a96aa" };
  var peak = Math.max.apply(null, data.hours.map(function (_, i) {
    return Object.keys(data.series).reduce(function (sum, state) { return sum + data.series[state][i]; }, 0);
  }));
  var traces = Object.keys(data.series).map(function (state) {
    return { type: "bar", name: state, x: data.hours, y: data.series[state], marker: { color: colours[state] } };
  });
  window.Plotly.newPlot(target, traces, {
    barmode: "stack",
    height: 220,
    margin: { l: 36, r: 12, t: 8, b: 32 },
    legend: { orientation: "h", y: 1.15 },
    xaxis: { type: "date" },
    // Whole jobs only: one tick per job while the counts are small.
    yaxis: { rangemode: "tozero", tickformat: "d", dtick: peak <= 10 ? 1 : null },
  }, { displayModeBar: false, responsive: true });
})();

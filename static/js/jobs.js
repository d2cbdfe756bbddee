// The jobs list kept live from /ws/jobs/ (apps/jobs/consumers.py): each "jobs.row" (apps.jobs.live
// job_row) moves the progress bar, percent and ETA of its row, its message and its state badge,
// when the row is on this page. Rows that are not shown are left alone; a reload shows new jobs.
(function () {
  "use strict";
  if (!window.MOC || !window.MOC.LiveSocket) return;

  function row(p) {
    var progress = document.querySelector('[data-job-progress="' + p.id + '"]');
    if (progress) {
      var bar = progress.querySelector("progress");
      if (bar) bar.value = p.percent / 100;
      progress.querySelector(".percent").textContent = p.percent + "%";
      progress.querySelector(".eta").textContent = p.eta ? p.eta + " left" : "";
    }
    var message = document.querySelector('[data-job-message="' + p.id + '"]');
    if (message) {
      var text = p.message || "";
      // As the page's truncatechars:40 cuts it; the whole message in the tooltip.
      message.textContent = text.length > 40 ? text.slice(0, 39) + "…" : text;
      message.title = text;
    }
    var state = document.querySelector('[data-job-state="' + p.id + '"]');
    if (state) {
      state.textContent = "";
      var badge = document.createElement("span");
      badge.className = "badge " + p.tone;
      badge.textContent = p.state_label;
      state.appendChild(badge);
      if (p.error_class) {
        var tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = p.error_class;
        state.appendChild(document.createTextNode(" "));
        state.appendChild(tag);
      }
    }
  }

  new window.MOC.LiveSocket("/ws/jobs/", { "jobs.row": row });
})();

// A websocket that reconnects by itself and says so, shared by every live page.
// On every (re)connect the page re-reads a snapshot over REST: pushes are a convenience,
// the database is the truth.
(function () {
  "use strict";
  function LiveSocket(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.delay = 500;
    this.status = document.getElementById("live-status");
    this.connect();
  }
  LiveSocket.prototype.setStatus = function (state, text) {
    if (!this.status) return;
    this.status.dataset.state = state;
    this.status.textContent = text;
  };
  LiveSocket.prototype.connect = function () {
    var self = this;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + self.path);
    ws.onopen = function () {
      self.delay = 500;
      self.setStatus("live", "live");
      if (self.handlers.snapshot) self.handlers.snapshot();
    };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      var fn = self.handlers[msg.type];
      if (fn) fn(msg.payload, msg);
    };
    ws.onclose = function () {
      self.setStatus("down", "disconnected — reconnecting…");
      setTimeout(function () { self.connect(); }, self.delay);
      self.delay = Math.min(self.delay * 2, 15000);
    };
  };
  window.MOC = window.MOC || {};
  window.MOC.LiveSocket = LiveSocket;
})();

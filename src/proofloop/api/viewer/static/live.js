// Live progress on a running run's page: follows the API's server-sent events and reloads the
// page (rendered on the server) when the run ends. Text only (textContent), never markup.
"use strict";
(function () {
  var box = document.getElementById("live");
  if (!box || !window.EventSource) return;
  var line = document.getElementById("live-line");
  var status = document.getElementById("run-status");
  var ENDED = ["finished", "failed", "interrupted", "cancelled", "canceled"];
  var NAMES = ["message", "progress", "record", "proof", "analysis", "meta", "status", "run", "finished",
               "failed", "cancelled", "interrupted", "done", "end"];
  var seen = 0;
  var source = new EventSource(box.getAttribute("data-events"));

  function describe(kind, data) {
    if (data === null || typeof data !== "object") return kind + (data ? ": " + String(data) : "");
    var parts = [];
    ["status", "kind", "round", "proofs", "analyses", "calls", "score", "message"].forEach(function (key) {
      if (data[key] !== undefined && data[key] !== null && typeof data[key] !== "object") parts.push(key + " " + data[key]);
    });
    return kind + (parts.length ? ": " + parts.join(", ") : "");
  }

  function onEvent(event) {
    var data = event.data;
    try { data = JSON.parse(event.data); } catch (e) { /* plain text */ }
    seen += 1;
    var kind = event.type === "message" ? ((data && data.type) || "event") : event.type;
    line.textContent = seen + " events · latest " + describe(kind, data);
    var ended = (data && typeof data === "object" && ENDED.indexOf(data.status) >= 0) || ENDED.indexOf(kind) >= 0;
    if (data && typeof data === "object" && data.status && status) status.textContent = String(data.status);
    if (ended) {
      source.close();
      line.textContent = "The run has ended; loading its results…";
      window.location.reload();
    }
  }

  NAMES.forEach(function (name) { source.addEventListener(name, onEvent); });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) line.textContent = "Live updates stopped: refresh the page to see progress.";
  };
})();

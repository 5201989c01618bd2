// The console's only script: progressive. Every action works without it (forms post,
// the server asks to confirm); it adds "select all" and a count on the bulk buttons.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input.select"));
  var count = document.getElementById("selected-count");
  var retry = document.getElementById("bulk-retry");
  var cancel = document.getElementById("bulk-cancel");
  if (!boxes.length || !count) { return; }
  function update() {
    var chosen = boxes.filter(function (b) { return b.checked; });
    var failed = chosen.filter(function (b) {
      return b.dataset.status === "failed" || b.dataset.status === "cancelled";
    }).length;
    var queued = chosen.length - failed;
    count.textContent = chosen.length ? chosen.length + " selected" : "";
    if (retry) { retry.textContent = "Retry " + failed + " failed run(s)"; retry.disabled = !failed || !!queued; }
    if (cancel) { cancel.textContent = "Cancel " + queued + " queued run(s)"; cancel.disabled = !queued || !!failed; }
    if (all) { all.checked = chosen.length === boxes.length; }
  }
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      update();
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", update); });
  update();
}());

// Runs in the reader's browser: the page is static, so only here can we tell that it
// has not been rebuilt for too long (the control plane may be down).
(function () {
  "use strict";
  var root = document.documentElement;
  var built = Date.parse(root.getAttribute("data-built"));
  var staleAfterMs = Number(root.getAttribute("data-stale-after")) * 1000;
  // A consumer's page is rebuilt only when its states change: whether Freshet still
  // publishes, it learns from the site's heartbeat.json (until that answers, it judges
  // nothing). The main page judges its own build time.
  var heartbeat = root.getAttribute("data-heartbeat");
  var published = null;

  function beat() {
    if (!heartbeat || !window.fetch) return;
    fetch(heartbeat, { cache: "no-store" }).then(function (answer) {
      return answer.ok ? answer.json() : null;
    }).then(function (doc) {
      var at = doc ? Date.parse(doc.generated_at) : NaN;
      if (!isNaN(at)) { published = at; tick(); }
    }).catch(function () {});
  }

  function human(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);  // as the server words it (int seconds)
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 72 * 3600) {
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      return h >= 10 || m === 0 ? h + " h" : h + " h " + m + " min";
    }
    return Math.floor(s / 86400) + " d";
  }

  function tick() {
    var now = Date.now();
    var times = document.querySelectorAll("time[data-rel]");
    for (var i = 0; i < times.length; i++) {
      var at = Date.parse(times[i].getAttribute("datetime"));
      if (isNaN(at)) continue;
      var diff = now - at;
      times[i].textContent = diff >= 0 ? human(diff) + " ago" : "in " + human(diff);
    }
    // ages in words ("27 h" old): the server's as of the build, kept current here
    var ages = document.querySelectorAll("time[data-age]");
    for (var k = 0; k < ages.length; k++) {
      var since = Date.parse(ages[k].getAttribute("datetime"));
      if (!isNaN(since)) ages[k].textContent = human(Math.max(0, now - since));
    }
    var banner = document.getElementById("page-stale");
    var last = published === null ? (heartbeat ? null : built) : Math.max(published, built);
    var stale = last !== null && now - last > staleAfterMs;
    if (banner) {
      banner.hidden = !stale;
      document.getElementById("page-stale-age").textContent = human(now - last);
    }
    root.classList.toggle("page-stale-on", stale);
  }

  // Day-by-day labels for the 90-day bars, on hover.
  var tip = null;
  function showTip(event) {
    var bar = event.target.closest(".bar");
    if (!bar) { if (tip) tip.hidden = true; return; }
    var days = bar.getAttribute("data-h");
    var box = bar.getBoundingClientRect();
    var i = Math.min(days.length - 1, Math.max(0, Math.floor((event.clientX - box.left) / box.width * days.length)));
    var day = new Date(Date.parse(bar.getAttribute("data-start") + "T00:00:00Z") + i * 86400000);
    var words = { o: "ok", p: "partial: some syncs failed", f: "failed",
                  m: "maintenance", "-": "no sync" };
    if (!tip) { tip = document.createElement("div"); tip.className = "bar-tip"; document.body.appendChild(tip); }
    tip.hidden = false;
    tip.textContent = day.toISOString().slice(0, 10) + ": " + words[days.charAt(i)];
    tip.style.left = (event.clientX + 12) + "px";
    tip.style.top = (event.clientY + 12) + "px";
  }

  tick();
  beat();
  setInterval(tick, 30000);
  setInterval(beat, 60000);
  document.addEventListener("visibilitychange", function () { beat(); tick(); });
  document.addEventListener("mousemove", showTip);
})();

// Progressive enhancement only: every page works without it.
(function () {
  "use strict";
  // Instants are rendered in UTC; show the viewer's zone beside them on hover.
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.title = d.toLocaleString() + " (your zone)"; }
    });
  }
  // The timing waterfall's bars: widths as data attributes (no inline styles under the CSP).
  function bars(root) {
    root.querySelectorAll(".bar[data-left]").forEach(function (el) {
      el.style.marginLeft = el.dataset.left + "%";
      el.style.width = el.dataset.width + "%";
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    bars(document);
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    document.querySelectorAll(".viewer-zone").forEach(function (el) { el.textContent = zone; });
    var rows = document.getElementById("execution-rows");
    var live = document.getElementById("live");
    if (rows && live && window.htmx) {
      setInterval(function () {
        if (live.checked && !document.hidden) {
          htmx.ajax("GET", rows.dataset.refresh, {target: rows, swap: "innerHTML"})
            .then(function () { localize(rows); });
        }
      }, 3000);
    }
  });
})();

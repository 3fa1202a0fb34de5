// Progressive enhancement only: every page works without it.
(function () {
  "use strict";
  // How often live parts refresh (the README says every 3 s).
  var REFRESH_MS = 3000;
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
    // Parts that refresh themselves (the executions list, a backfill's progress): each
    // names its URL in data-refresh; the server answers with just that part.
    var live = document.getElementById("live");
    document.querySelectorAll("[data-refresh]").forEach(function (part) {
      if (!window.htmx) { return; }
      var last = null;
      var timer = setInterval(function () {
        // Not while the keyboard focus is on a link in the part: the swap would drop it
        // to the page's start (a keyboard user lost their place every 3 s).
        if ((!live || live.checked) && !document.hidden && part.dataset.refresh &&
            !part.contains(document.activeElement)) {
          htmx.ajax("GET", part.dataset.refresh, {source: part, target: part, swap: "innerHTML"})
            .then(function () { localize(part); });
        }
      }, REFRESH_MS);
      part.addEventListener("htmx:beforeSwap", function (event) {
        var xhr = event.detail.xhr;
        var asked = new URL(part.dataset.refresh, window.location.href).pathname;
        var answered = new URL(xhr.responseURL || asked, window.location.href).pathname;
        if (answered !== asked || xhr.status === 401 || xhr.status === 403) {
          // The session ended: the answer is the login page (a redirect followed), not the
          // part. Stop, and load this page again: the console sends it to the login,
          // which comes back here.
          event.detail.shouldSwap = false;
          clearInterval(timer);
          window.location.reload();
          return;
        }
        // The same rows as last time: left in place, so a screen reader does not read the
        // whole live region again every 3 s.
        if (xhr.responseText === last) { event.detail.shouldSwap = false; }
        last = xhr.responseText;
      });
    });
  });
})();

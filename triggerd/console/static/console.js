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
  // A form sent after the session ended is answered with the login page (saying so:
  // data-unsent), which leads back to the form's page after the login. What the form held
  // is kept in this tab meanwhile and put back in that form, to check and send again:
  // never a password, nor a hidden field (the CSRF token must be the new session's).
  var UNSENT = "triggerd-unsent";
  // Kept this long at most: a login much later (another operator at this browser) finds
  // nothing of it.
  var UNSENT_MS = 10 * 60 * 1000;
  function typed(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && ["hidden", "password", "submit", "button", "file", "reset"]
        .indexOf(el.type) < 0;
    });
  }
  function remember(form) {
    var fields = typed(form);
    if ((form.getAttribute("method") || "").toLowerCase() !== "post" || !fields.length ||
        form.querySelector("input[type=password]")) { return; }
    var saved = {action: form.action, at: Date.now(), fields: fields.map(function (el) {
      return {name: el.name, value: el.value, checked: el.checked};
    })};
    try { sessionStorage.setItem(UNSENT, JSON.stringify(saved)); } catch (e) { /* full */ }
  }
  function restore() {
    var saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(UNSENT) || "null"); } catch (e) { /* none */ }
    if (!saved) { return; }
    if (!(Date.now() - saved.at < UNSENT_MS)) {
      sessionStorage.removeItem(UNSENT);
      return;
    }
    if (document.querySelector("form[action$='/login']")) {
      // Kept through the login (a mistyped token too); only the page that says the form
      // was not sent marks it to be put back.
      if (document.querySelector("[data-unsent]")) {
        saved.pending = true;
        try { sessionStorage.setItem(UNSENT, JSON.stringify(saved)); } catch (e) { /* full */ }
      }
      return;
    }
    // Any other page ends it: a form that was sent leads here with nothing to put back.
    sessionStorage.removeItem(UNSENT);
    if (!saved.pending) { return; }
    var form = Array.prototype.find.call(document.forms, function (f) {
      return f.action === saved.action;
    });
    if (!form) { return; }
    var fields = typed(form);
    if (fields.length !== saved.fields.length) { return; }  // another form now
    fields.forEach(function (el, i) {
      var was = saved.fields[i];
      if (was.name !== el.name) { return; }
      if (el.type === "checkbox" || el.type === "radio") { el.checked = was.checked; }
      else { el.value = was.value; }
    });
    var opened = form.closest("details");
    if (opened) { opened.open = true; }
    var note = document.createElement("p");
    note.setAttribute("role", "status");
    note.className = "notice";
    note.textContent = "What you typed before your session ended is back in this form;" +
      " it has not been sent. Check it and send it again.";
    form.parentNode.insertBefore(note, form);
    fields[0].focus();
  }
  document.addEventListener("submit", function (event) { remember(event.target); });
  document.addEventListener("DOMContentLoaded", function () {
    restore();
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

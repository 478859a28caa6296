// tracker's dashboard: copy buttons and the live refresh of pages with live tasks.
// Everything works without this script except these two things.
(function () {
  "use strict";

  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (ignored) { /* nothing more to try */ }
    document.body.removeChild(area);
  }

  function showCopyButtons(root) {
    root.querySelectorAll("button.copy").forEach(function (button) { button.hidden = false; });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) { return; }
    var source = button.dataset.copy ? document.getElementById(button.dataset.copy) : null;
    copyText(source ? source.textContent.trim() : button.dataset.copyText || "", button);
  });

  // A region marked data-live-refresh="SECONDS" asks for the page again after that long and
  // swaps in every [data-region] by its id; it stops once the fresh page has no such mark.
  function scheduleRefresh() {
    var marked = document.querySelector("[data-live-refresh]");
    if (!marked) { return; }
    var seconds = parseInt(marked.getAttribute("data-live-refresh"), 10) || 2;
    setTimeout(refresh, seconds * 1000);
  }

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { setTimeout(refresh, 5000); return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var openDetails = {};
        document.querySelectorAll("details[id][open]").forEach(function (d) { openDetails[d.id] = true; });
        document.querySelectorAll("[data-region]").forEach(function (region) {
          var replacement = fresh.getElementById(region.id);
          if (replacement) {
            var adopted = document.importNode(replacement, true);
            region.replaceWith(adopted);
            adopted.querySelectorAll("details[id]").forEach(function (d) {
              if (openDetails[d.id]) { d.open = true; }
            });
            showCopyButtons(adopted);
          }
        });
        scheduleRefresh();
      })
      .catch(function () { setTimeout(refresh, 5000); });
  }

  showCopyButtons(document);
  scheduleRefresh();
})();

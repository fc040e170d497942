// Small behaviours for the server-rendered pages. No inline scripts, so a strict CSP stays possible.
(function () {
  "use strict";

  // Overlay opacity: each slider names its overlay image with data-overlay="<img id>".
  // Delegated on document so scan cards swapped in by htmx work without re-binding.
  document.addEventListener("input", function (event) {
    var slider = event.target;
    if (!slider.matches || !slider.matches("input[data-overlay]")) return;
    var img = document.getElementById(slider.dataset.overlay);
    if (img) img.style.opacity = String(slider.value / 100);
    var out = document.getElementById(slider.dataset.overlay + "-value");
    if (out) out.textContent = slider.value + "%";
  });

  // Probability bars: the width comes from data-percent (the CSP forbids inline style
  // attributes); set on load and on every fragment htmx swaps in.
  function sizeBars(root) {
    root.querySelectorAll("[data-percent]").forEach(function (bar) {
      bar.style.width = bar.dataset.percent + "%";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { sizeBars(document); });
  document.addEventListener("htmx:load", function (event) { sizeBars(event.target); });

  // A multi-file upload can take a while on a clinic connection: say so and block double submits.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form[data-busy-text]")) return;
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
      button.textContent = form.dataset.busyText;
    }
  });
})();

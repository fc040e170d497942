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

  // A file over the upload limit would make the server refuse the whole request (413) and
  // the form with it: leave such files out of the picker at once, and name them beside it.
  function megabytes(bytes) { return Math.round(bytes / 1048576) + " MB"; }
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[type=file][data-max-bytes]")) return;
    var limit = Number(input.dataset.maxBytes), zipLimit = Number(input.dataset.maxZipBytes || limit);
    var kept = new DataTransfer(), left = [];
    Array.prototype.forEach.call(input.files, function (file) {
      var max = /\.zip$/i.test(file.name) ? zipLimit : limit;
      if (file.size > max) left.push(file.name + " (" + megabytes(file.size) + "; the limit is " + megabytes(max) + ")");
      else kept.items.add(file);
    });
    var note = input.parentNode.querySelector(".upload-left-out");
    if (!left.length) { if (note) note.remove(); return; }
    input.files = kept.files;
    if (!note) {
      note = document.createElement("ul");
      note.className = "errorlist upload-left-out";
      note.setAttribute("role", "alert");
      input.insertAdjacentElement("afterend", note);
    }
    note.textContent = "";
    left.forEach(function (text) {
      var item = document.createElement("li");
      item.textContent = "Left out, too large: " + text + ".";
      note.appendChild(item);
    });
  });

  // After a refused form the page comes back with its errors, often far below where the page
  // opens: bring the first one into view and give it the focus (screen readers announce it).
  document.addEventListener("DOMContentLoaded", function () {
    var error = document.querySelector("form .errorlist:not(:empty), [data-error-focus]");
    if (!error) return;
    if (!error.hasAttribute("tabindex")) error.setAttribute("tabindex", "-1");
    error.scrollIntoView({ block: "center" });
    error.focus({ preventScroll: true });
  });

  // The patient picker (templates/web/_patient_picker.html): a suggestion picked puts its
  // id in the hidden field; typing again clears the choice until another is picked.
  document.addEventListener("click", function (event) {
    var option = event.target.closest && event.target.closest(".patient-option");
    if (!option) return;
    var picker = option.closest(".patient-picker");
    picker.querySelector("input[name=patient]").value = option.dataset.patientId;
    picker.querySelector("input[type=search]").value = option.dataset.patientLabel;
    picker.querySelector("#patient-chosen").textContent = "Chosen: " + option.dataset.patientLabel;
    picker.querySelector(".patient-options").textContent = "";
  });
  document.addEventListener("input", function (event) {
    if (!event.target.matches || !event.target.matches(".patient-picker input[type=search]")) return;
    var picker = event.target.closest(".patient-picker");
    picker.querySelector("input[name=patient]").value = "";
    picker.querySelector("#patient-chosen").textContent = "No patient chosen yet.";
  });

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

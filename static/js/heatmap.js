// Heatmaps on the scan card, coloured in the browser: the server sends each class's map as an
// 8-bit gray PNG (GET /api/scans/<id>/heatmaps/<class>/, 202 while a worker computes it); the
// colour map and the opacity are applied here, so changing them sends no request, and a class
// once fetched is kept for the page's life. No inline scripts (CSP), no third-party code.
(function () {
  "use strict";

  // Colour maps: value in [0, 1] → [r, g, b] in 0..255.
  function jet(v) {
    // The classic piecewise-linear jet (as OpenCV's COLORMAP_JET, which the server overlay uses).
    function ramp(x) { return Math.max(0, Math.min(1, x)); }
    return [ramp(1.5 - Math.abs(4 * v - 3)), ramp(1.5 - Math.abs(4 * v - 2)), ramp(1.5 - Math.abs(4 * v - 1))]
      .map(function (c) { return Math.round(c * 255); });
  }
  // Inferno (matplotlib), sampled at 9 points and interpolated.
  var INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];
  function inferno(v) {
    var x = v * (INFERNO.length - 1), i = Math.min(INFERNO.length - 2, Math.floor(x)), t = x - i;
    return [0, 1, 2].map(function (k) { return Math.round(INFERNO[i][k] * (1 - t) + INFERNO[i + 1][k] * t); });
  }
  function gray(v) { var c = Math.round(v * 255); return [c, c, c]; }
  var COLOUR_MAPS = { jet: jet, inferno: inferno, gray: gray };
  var LUTS = {};
  function lut(name) {
    if (!LUTS[name]) {
      var f = COLOUR_MAPS[name] || jet, table = new Uint8ClampedArray(256 * 3);
      for (var i = 0; i < 256; i++) { table.set(f(i / 255), i * 3); }
      LUTS[name] = table;
    }
    return LUTS[name];
  }

  function parts(controls) {
    return {
      canvas: document.getElementById(controls.dataset.canvas),
      overlay: document.getElementById(controls.dataset.overlay),
      opacity: document.getElementById(controls.dataset.opacity),
      cls: controls.querySelector("[data-heatmap-class]"),
      colours: controls.querySelector("[data-heatmap-colours]"),
      status: controls.querySelector("[data-heatmap-status]"),
    };
  }

  // Draw the cached gray map of the selected class with the selected colours and opacity.
  function render(controls) {
    var p = parts(controls), map = (controls._maps || {})[p.cls.value];
    if (!p.canvas || !map) return;
    var table = lut(p.colours.value), opacity = p.opacity ? p.opacity.value / 100 : 0.5;
    if (p.canvas.width !== map.width || p.canvas.height !== map.height) {
      p.canvas.width = map.width;
      p.canvas.height = map.height;
    }
    var context = p.canvas.getContext("2d"), out = context.createImageData(map.width, map.height);
    for (var i = 0, n = map.width * map.height; i < n; i++) {
      var v = map.values[i];
      out.data[i * 4] = table[v * 3];
      out.data[i * 4 + 1] = table[v * 3 + 1];
      out.data[i * 4 + 2] = table[v * 3 + 2];
      out.data[i * 4 + 3] = Math.round(v * opacity); // cold regions keep the scan's own pixels
    }
    context.putImageData(out, 0, 0);
    p.canvas.dataset.label = p.cls.value;
    p.canvas.dataset.colours = p.colours.value;
    p.canvas.hidden = false;
    if (p.overlay) p.overlay.hidden = true; // the server's overlay is the no-JavaScript fallback
  }

  // createImageBitmap reads the PNG without a blob: URL, so a strict CSP (img-src 'self') holds.
  function decode(blob) {
    return createImageBitmap(blob).then(function (bitmap) {
      var c = document.createElement("canvas");
      c.width = bitmap.width;
      c.height = bitmap.height;
      var ctx = c.getContext("2d");
      ctx.drawImage(bitmap, 0, 0);
      var rgba = ctx.getImageData(0, 0, c.width, c.height).data, values = new Uint8Array(c.width * c.height);
      for (var i = 0; i < values.length; i++) values[i] = rgba[i * 4];
      return { width: c.width, height: c.height, values: values };
    });
  }

  function say(controls, text) { parts(controls).status.textContent = text; }

  // Fetch the selected class's map (polling while a worker computes it), then draw it.
  function load(controls, attempt) {
    var p = parts(controls), label = p.cls.value, name = p.cls.selectedOptions[0].textContent.split(" (")[0];
    controls._maps = controls._maps || {};
    if (controls._maps[label]) { say(controls, ""); render(controls); return; }
    // Neither the server's overlay (the predicted class's map) nor the canvas's last map is left
    // under another class's name while this one loads, or if it cannot be had.
    if (p.overlay && p.overlay.dataset.label !== label) p.overlay.hidden = true;
    if (p.canvas && p.canvas.dataset.label && p.canvas.dataset.label !== label) p.canvas.hidden = true;
    say(controls, "Computing the heatmap for " + name + "…");
    fetch(controls.dataset.heatmapUrl.replace("__label__", encodeURIComponent(label)), {
      credentials: "same-origin", headers: { Accept: "image/png, application/json" },
    }).then(function (response) {
      if (response.status === 202) {
        var wait = (parseFloat(response.headers.get("Retry-After")) || 1) * 1000;
        if (attempt < 120) setTimeout(function () { if (p.cls.value === label) load(controls, attempt + 1); }, wait);
        else say(controls, "The heatmap for " + name + " is taking too long; try again later.");
        return null;
      }
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          say(controls, "No heatmap for " + name + ": " + (body.detail || response.statusText));
          return null;
        });
      }
      return response.blob().then(decode).then(function (map) {
        controls._maps[label] = map;
        if (p.cls.value === label) { say(controls, ""); render(controls); }
      });
    }).catch(function () { say(controls, "The heatmap could not be loaded; check the connection."); });
  }

  function init(root) {
    (root || document).querySelectorAll(".heatmap-controls:not([data-started])").forEach(function (controls) {
      controls.dataset.started = "1";
      controls.hidden = false;
      load(controls, 0);
    });
  }

  document.addEventListener("change", function (event) {
    var controls = event.target.closest && event.target.closest(".heatmap-controls");
    if (!controls) return;
    if (event.target.matches("[data-heatmap-class]")) load(controls, 0);
    else render(controls); // colours: no request
  });
  // The card's opacity slider: redraw from the cached map (no request).
  document.addEventListener("input", function (event) {
    if (!event.target.matches || !event.target.matches("input[data-overlay]")) return;
    document.querySelectorAll(".heatmap-controls[data-opacity='" + event.target.id + "']").forEach(render);
  });
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  // Scan cards swapped in by htmx (polling until done) start their own controls.
  document.addEventListener("htmx:load", function (event) { init(event.detail && event.detail.elt); });
})();

/* report.html's interactive trajectories: plain DOM and SVG, no library.
   Data: the JSON document in <script id="chart-data">. Hover shows every visible run's value at
   the nearest measured step; drag across the plot to zoom on a step range; double-click resets;
   click a run in the legend to hide or show it. */
(function () {
  "use strict";
  var W = 900, H = 380, M = { left: 64, right: 18, top: 16, bottom: 44 };
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var chart = document.getElementById("chart");
  var select = document.getElementById("chart-quantity");
  var legend = document.getElementById("chart-legend");
  var tip = document.getElementById("chart-tip");
  var hidden = {};
  var domain = null;
  /* the <svg> element is in the page's markup: the HTML parser gives it its namespace */
  var svg = document.getElementById("chart-svg");
  var NS = svg.namespaceURI;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);

  function el(name, attributes, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    (parent || svg).appendChild(node);
    return node;
  }
  function colour(index) { return COLOURS[index % COLOURS.length]; }
  function fmt(value) {
    if (value === 0) { return "0"; }
    var magnitude = Math.abs(value);
    return (magnitude >= 1e4 || magnitude < 1e-3) ? value.toExponential(3) : value.toPrecision(4);
  }
  function tickLabel(value) {
    /* the shortest text of a tick value (ticks are round numbers: 0.2, 20, 1e-05) */
    var magnitude = Math.abs(value);
    if (value !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) {
      return Number(value.toExponential(6)).toExponential();
    }
    return String(Number(value.toPrecision(6)));
  }
  function ticks(low, high, count) {
    var span = high - low || 1, raw = span / count;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; })
      .filter(function (s) { return s >= raw; })[0];
    var out = [];
    for (var t = Math.ceil(low / step) * step; t <= high + 1e-12 * span; t += step) {
      out.push(Math.abs(t) < 1e-12 * span ? 0 : t);
    }
    return out;
  }
  function quantityRuns(key) {
    return data.runs.map(function (run, index) { return { run: run, index: index }; })
      .filter(function (item) { return item.run.series[key]; });
  }

  function draw() {
    var key = select.value;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var items = quantityRuns(key);
    var shown = items.filter(function (item) { return !hidden[item.run.name]; });
    var xs = [], ys = [];
    items.forEach(function (item) {
      item.run.series[key].forEach(function (p) { xs.push(p[0]); });
    });
    if (!xs.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }).textContent =
        "no run recorded this quantity";
      return;
    }
    var x0 = domain ? domain[0] : Math.min.apply(null, xs);
    var x1 = domain ? domain[1] : Math.max.apply(null, xs);
    if (x1 <= x0) { x1 = x0 + 1; }
    shown.forEach(function (item) {
      item.run.series[key].forEach(function (p) {
        if (p[0] >= x0 && p[0] <= x1) { ys.push(p[1]); }
      });
    });
    if (key === "harm" && data.phi !== null) { ys.push(data.phi); }
    var y0 = ys.length ? Math.min.apply(null, ys) : 0, y1 = ys.length ? Math.max.apply(null, ys) : 1;
    if (y1 <= y0) { y0 -= 0.5; y1 += 0.5; }
    var pad = 0.05 * (y1 - y0);
    y0 -= pad; y1 += pad;
    var sx = function (x) { return M.left + (x - x0) / (x1 - x0) * (W - M.left - M.right); };
    var sy = function (y) { return H - M.bottom - (y - y0) / (y1 - y0) * (H - M.top - M.bottom); };
    ticks(x0, x1, 8).forEach(function (t) {
      el("line", { x1: sx(t), x2: sx(t), y1: M.top, y2: H - M.bottom, stroke: "#eef1f4" });
      el("text", { x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle", "font-size": 11 })
        .textContent = tickLabel(t);
    });
    ticks(y0, y1, 6).forEach(function (t) {
      el("line", { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t), stroke: "#eef1f4" });
      el("text", { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11 })
        .textContent = tickLabel(t);
    });
    el("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom,
                 fill: "none", stroke: "#9aa5b1" });
    el("text", { x: (M.left + W - M.right) / 2, y: H - 8, "text-anchor": "middle",
                 "font-size": 12 }).textContent = "step";
    var label = data.quantities.filter(function (q) { return q.key === key; })[0].label;
    el("text", { x: 14, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", "font-size": 12,
                 transform: "rotate(-90 14 " + (M.top + H - M.bottom) / 2 + ")" })
      .textContent = label;
    var clip = el("clipPath", { id: "plot-area" });
    el("rect", { x: M.left, y: M.top, width: W - M.left - M.right,
                 height: H - M.top - M.bottom }, clip);
    if (key === "harm" && data.phi !== null) {
      el("line", { x1: M.left, x2: W - M.right, y1: sy(data.phi), y2: sy(data.phi),
                   stroke: "#d62728", "stroke-dasharray": "6 4", "data-role": "threshold" });
      el("text", { x: W - M.right - 4, y: sy(data.phi) - 5, "text-anchor": "end",
                   "font-size": 11, fill: "#d62728" }).textContent = "phi = " + data.phi;
    }
    shown.forEach(function (item) {
      var points = item.run.series[key].map(function (p) { return sx(p[0]) + "," + sy(p[1]); });
      el("polyline", { points: points.join(" "), fill: "none", stroke: colour(item.index),
                       "stroke-width": 1.6, "clip-path": "url(#plot-area)",
                       "data-run": item.run.name });
    });
    var guide = el("line", { y1: M.top, y2: H - M.bottom, stroke: "#56606b",
                             "stroke-dasharray": "3 3", visibility: "hidden" });
    var band = el("rect", { y: M.top, height: H - M.top - M.bottom, fill: "#1f77b4",
                            "fill-opacity": 0.12, visibility: "hidden" });
    var overlay = el("rect", { x: M.left, y: M.top, width: W - M.left - M.right,
                               height: H - M.top - M.bottom, fill: "transparent" });
    function toStep(event) {
      var box = svg.getBoundingClientRect();
      var px = (event.clientX - box.left) / box.width * W;
      return { px: px, step: x0 + (px - M.left) / (W - M.left - M.right) * (x1 - x0) };
    }
    var dragFrom = null;
    overlay.addEventListener("mousemove", function (event) {
      var at = toStep(event);
      guide.setAttribute("x1", at.px); guide.setAttribute("x2", at.px);
      guide.setAttribute("visibility", "visible");
      if (dragFrom !== null) {
        band.setAttribute("x", Math.min(dragFrom.px, at.px));
        band.setAttribute("width", Math.abs(at.px - dragFrom.px));
        band.setAttribute("visibility", "visible");
      }
      var lines = ["step " + Math.round(at.step)];
      shown.forEach(function (item) {
        var best = null;
        item.run.series[key].forEach(function (p) {
          if (best === null || Math.abs(p[0] - at.step) < Math.abs(best[0] - at.step)) { best = p; }
        });
        if (best !== null) { lines.push(item.run.name + ": " + fmt(best[1]) + " (step " + best[0] + ")"); }
      });
      tip.textContent = "";
      lines.forEach(function (line, i) {
        if (i) { tip.appendChild(document.createElement("br")); }
        tip.appendChild(document.createTextNode(line));
      });
      var box = chart.getBoundingClientRect();
      tip.style.left = Math.min(event.clientX - box.left + 14, box.width - 260) + "px";
      tip.style.top = (event.clientY - box.top + 14) + "px";
      tip.style.display = "block";
    });
    overlay.addEventListener("mouseleave", function () {
      guide.setAttribute("visibility", "hidden"); tip.style.display = "none";
    });
    overlay.addEventListener("mousedown", function (event) { dragFrom = toStep(event); });
    overlay.addEventListener("mouseup", function (event) {
      var at = toStep(event);
      if (dragFrom !== null && Math.abs(at.px - dragFrom.px) > 8) {
        domain = [Math.min(dragFrom.step, at.step), Math.max(dragFrom.step, at.step)];
        dragFrom = null;
        draw();
        return;
      }
      dragFrom = null;
      band.setAttribute("visibility", "hidden");
    });
    overlay.addEventListener("dblclick", function () { domain = null; draw(); });
  }

  function buildLegend() {
    legend.textContent = "";
    data.runs.forEach(function (run, index) {
      var entry = document.createElement("span");
      entry.className = hidden[run.name] ? "off" : "";
      entry.title = run.attack + " (" + run.role + ")" +
        (run.diverged_at !== null ? ", diverged at step " + run.diverged_at : "");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(index);
      entry.appendChild(swatch);
      entry.appendChild(document.createTextNode(run.name));
      entry.addEventListener("click", function () {
        hidden[run.name] = !hidden[run.name];
        buildLegend();
        draw();
      });
      legend.appendChild(entry);
    });
  }

  data.quantities.forEach(function (q) {
    if (!quantityRuns(q.key).length) { return; }
    var option = document.createElement("option");
    option.value = q.key;
    option.textContent = q.label;
    select.appendChild(option);
  });
  select.addEventListener("change", function () { domain = null; draw(); });
  buildLegend();
  draw();
  document.body.setAttribute("data-rendered", "ok");
})();

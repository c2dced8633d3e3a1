/* arclab margin explorer: the target logit s*(cos(m1*theta + m2) - m3) and the binary decision
 * margin, redrawn in the page when a slider moves; no kernel, no network.
 *
 * The numbers mirror arclab.losses.margins.target_logit (the three overflow policies) and
 * arclab.margin_geometry.decision_boundary_deg; the book's browser test compares them.
 * Each redraw writes what it drew into the root's hidden table (.mx-values: one row per angle,
 * data-theta-deg / data-logit / data-boundary-deg) and into data-drawn (the settings, as JSON).
 *
 * Served by arclab.book.widgets.margin_explorer_html, which inlines this file once per explorer.
 */
(function (global) {
  "use strict";
  if (global.arclabMarginExplorer) {
    return;
  }
  var DEG = Math.PI / 180;
  var SVG_NS = "http://www.w3.org/2000/svg";

  /* Target logit divided by s at the cosine c, as arclab.losses.margins.target_logit computes it. */
  function targetLogit(c, m1, m2, m3, overflow) {
    var theta = Math.acos(Math.min(1, Math.max(-1, c)));
    var angle = m1 * theta + m2;
    var value = Math.cos(angle) - m3;
    if (overflow === "easy") {
      if (!(c > 0)) {
        value = c;
      }
    } else if (overflow === "monotonic") {
      var thetaStar = (Math.PI - m2) / m1;
      if (thetaStar < Math.PI && !(angle <= Math.PI)) {
        value = c - (Math.cos(thetaStar) + 1 + m3);
      }
    }
    return value;
  }

  /* Everything one redraw shows, on `points` angles evenly spaced over [0, 180] degrees. */
  function compute(p, points) {
    var thetaDeg = [], logit = [], boundaryDeg = [];
    for (var i = 0; i < points; i++) {
      var t = (180 * i) / (points - 1);
      var target = targetLogit(Math.cos(t * DEG), p.m1, p.m2, p.m3, p.overflow);
      thetaDeg.push(t);
      logit.push(p.s * target);
      boundaryDeg.push(Math.acos(Math.min(1, Math.max(-1, target))) * (180 / Math.PI));
    }
    var probes = {};
    [10, 30, 60, 90].forEach(function (t1) {
      var b = targetLogit(Math.cos(t1 * DEG), p.m1, p.m2, p.m3, p.overflow);
      probes[t1] = Math.acos(Math.min(1, Math.max(-1, b))) * (180 / Math.PI) - t1;
    });
    return {thetaDeg: thetaDeg, logit: logit, boundaryDeg: boundaryDeg, marginDeg: probes,
            thetaStarDeg: ((Math.PI - p.m2) / p.m1) * (180 / Math.PI)};
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function niceStep(span, target) {
    var raw = span / target, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * mag >= raw) { return steps[i] * mag; }
    }
    return 10 * mag;
  }

  function fmt(v) {
    return Math.abs(v) < 1e-9 ? "0" : String(Math.round(v * 100) / 100);
  }

  /* One set of axes: frame, ticks, labels, title, then lines in data coordinates. The box and
   * domains are written onto the <g> so a test can map drawn points back to data. */
  function axes(svg, o) {
    var W = 400, H = 300, box = {left: 60, top: 28, width: W - 60 - 10, height: H - 28 - 48};
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var g = el("g", {"class": "mx-axes", "data-box": [box.left, box.top, box.width,
      box.height].join(","), "data-x-domain": o.x.join(","), "data-y-domain": o.y.join(",")}, svg);
    var sx = function (v) { return box.left + ((v - o.x[0]) / (o.x[1] - o.x[0])) * box.width; };
    var sy = function (v) { return box.top + ((o.y[1] - v) / (o.y[1] - o.y[0])) * box.height; };
    el("rect", {x: box.left, y: box.top, width: box.width, height: box.height,
      "class": "mx-frame"}, g);
    o.xTicks.forEach(function (v) {
      el("line", {x1: sx(v), x2: sx(v), y1: box.top + box.height, y2: box.top + box.height + 4,
        "class": "mx-tick"}, g);
      el("text", {x: sx(v), y: box.top + box.height + 17, "class": "mx-ticklabel",
        "text-anchor": "middle"}, g).textContent = fmt(v);
    });
    o.yTicks.forEach(function (v) {
      el("line", {x1: box.left - 4, x2: box.left, y1: sy(v), y2: sy(v), "class": "mx-tick"}, g);
      el("text", {x: box.left - 7, y: sy(v) + 4, "class": "mx-ticklabel",
        "text-anchor": "end"}, g).textContent = fmt(v);
    });
    el("text", {x: box.left + box.width / 2, y: H - 8, "class": "mx-label",
      "text-anchor": "middle"}, g).textContent = o.xLabel;
    el("text", {x: 13, y: box.top + box.height / 2, "class": "mx-label", "text-anchor": "middle",
      transform: "rotate(-90 13 " + (box.top + box.height / 2) + ")"}, g).textContent = o.yLabel;
    el("text", {x: box.left + box.width / 2, y: 17, "class": "mx-title",
      "text-anchor": "middle"}, g).textContent = o.title;
    var clip = "mx-clip-" + Math.random().toString(36).slice(2);
    el("rect", {x: box.left, y: box.top, width: box.width, height: box.height},
      el("clipPath", {id: clip}, g));
    var plot = el("g", {"clip-path": "url(#" + clip + ")"}, g);
    return {
      line: function (xs, ys, cls, label) {
        var pts = xs.map(function (x, i) { return sx(x).toFixed(3) + "," + sy(ys[i]).toFixed(3); });
        var node = el("polyline", {points: pts.join(" "), "class": cls, fill: "none"}, plot);
        if (label) { node.setAttribute("data-label", label); }
        return node;
      },
      /* Entries stacked from the top-left ("tl") or bottom-left ("bl") corner of the box. */
      legend: function (entries, corner) {
        var x = box.left + 8;
        var y = corner === "bl" ? box.top + box.height - 8 - 15 * (entries.length - 1)
          : box.top + 14;
        el("rect", {x: x - 4, y: y - 12, width: 236, height: 15 * entries.length + 4,
          "class": "mx-legend-box"}, g);
        entries.forEach(function (e) {
          el("line", {x1: x, x2: x + 18, y1: y - 4, y2: y - 4, "class": e.cls}, g);
          el("text", {x: x + 22, y: y, "class": "mx-legend"}, g).textContent = e.label;
          y += 15;
        });
      },
      sx: sx, sy: sy, box: box, g: g
    };
  }

  function values(root) {
    var p = {};
    ["m1", "m2", "m3", "s"].forEach(function (k) {
      p[k] = parseFloat(root.querySelector("[name=" + k + "]").value);
    });
    p.overflow = root.querySelector("[name=overflow]").value;
    return p;
  }

  function redraw(root, config) {
    var p = values(root), d = compute(p, config.points);
    var refs = config.references.map(function (r) {
      return {label: r.label, data: compute({m1: r.m1, m2: r.m2, m3: r.m3, s: p.s,
        overflow: p.overflow}, config.points)};
    });
    root.querySelector("[data-for=m2]").textContent =
      p.m2.toFixed(2) + " rad (" + (p.m2 / DEG).toFixed(1) + "\u00b0)";
    ["m1", "m3", "s"].forEach(function (k) {
      root.querySelector("[data-for=" + k + "]").textContent =
        k === "s" ? String(p.s) : p[k].toFixed(2);
    });

    var lo = Math.min.apply(null, d.logit.concat([-p.s]));
    refs.forEach(function (r) { lo = Math.min(lo, Math.min.apply(null, r.data.logit)); });
    var step = niceStep(p.s - lo, 6), yLo = Math.floor(lo / step) * step;
    var yTicks = [];
    for (var v = yLo; v <= p.s + 1e-9; v += step) { yTicks.push(v); }
    var left = axes(root.querySelector(".mx-logit"), {x: [0, 180], y: [yLo, p.s],
      xTicks: [0, 30, 60, 90, 120, 150, 180], yTicks: yTicks,
      xLabel: "\u03b8, angle to the target centre (degrees)",
      yLabel: "target logit (\u00d7 s)",
      title: "Target logit, s = " + p.s + ", overflow = " + p.overflow});
    left.line([0, 180], [0, 0], "mx-zero");
    refs.forEach(function (r, i) {
      left.line(r.data.thetaDeg, r.data.logit, "mx-ref mx-ref-" + i, r.label);
    });
    left.line(d.thetaDeg, d.logit, "mx-curve", "current");
    if (d.thetaStarDeg < 180) {
      left.line([d.thetaStarDeg, d.thetaStarDeg], [yLo, p.s], "mx-star");
      var before = d.thetaStarDeg > 120;
      el("text", {x: left.sx(d.thetaStarDeg) + (before ? -4 : 4), y: left.box.top + 12,
        "class": "mx-legend", "text-anchor": before ? "end" : "start"}, left.g).textContent =
        "\u03b8* = " + d.thetaStarDeg.toFixed(1) + "\u00b0";
    }
    left.legend([{cls: "mx-curve", label: "(m1, m2, m3) = (" + p.m1.toFixed(2) + ", " +
      p.m2.toFixed(2) + ", " + p.m3.toFixed(2) + ")"}].concat(refs.map(function (r, i) {
      return {cls: "mx-ref mx-ref-" + i, label: r.label};
    })), "bl");

    var right = axes(root.querySelector(".mx-boundary"), {x: [0, 180], y: [0, 180],
      xTicks: [0, 45, 90, 135, 180], yTicks: [0, 45, 90, 135, 180],
      xLabel: "\u03b81, angle to W1 (degrees)", yLabel: "\u03b82, angle to W2 (degrees)",
      title: "Binary decision margin"});
    right.line([0, 180], [0, 180], "mx-diagonal");
    right.line(d.thetaDeg, d.boundaryDeg, "mx-class1", "class 1 boundary");
    right.line(d.boundaryDeg, d.thetaDeg, "mx-class2", "class 2 boundary");
    right.legend([{cls: "mx-class1", label: "class 1 boundary (wins above)"},
      {cls: "mx-class2", label: "class 2 boundary (wins right)"}], "tl");

    var star = d.thetaStarDeg < 180 ? d.thetaStarDeg.toFixed(1) + "\u00b0" : "none (\u2265 180\u00b0)";
    root.querySelector(".mx-readout").textContent = "\u03b8* = (\u03c0 \u2212 m2)/m1: " + star +
      ". Angular margin \u03b82 \u2212 \u03b81 at \u03b81 = 10\u00b0, 30\u00b0, 60\u00b0, 90\u00b0: " +
      [10, 30, 60, 90].map(function (t) { return d.marginDeg[t].toFixed(1) + "\u00b0"; })
        .join(", ") + ".";

    var body = root.querySelector(".mx-values tbody");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    d.thetaDeg.forEach(function (t, i) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-theta-deg", String(t));
      tr.setAttribute("data-logit", String(d.logit[i]));
      tr.setAttribute("data-boundary-deg", String(d.boundaryDeg[i]));
      [t, d.logit[i], d.boundaryDeg[i]].forEach(function (x) {
        var td = document.createElement("td");
        td.textContent = x.toFixed(6);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var drawn = {m1: p.m1, m2: p.m2, m3: p.m3, s: p.s, overflow: p.overflow,
      thetaStarDeg: d.thetaStarDeg, marginDeg: d.marginDeg};
    root.setAttribute("data-drawn", JSON.stringify(drawn));
    root.setAttribute("data-redraws", String(parseInt(root.getAttribute("data-redraws") || "0",
      10) + 1));
  }

  function mount(root) {
    var config = JSON.parse(root.getAttribute("data-config"));
    var again = function () { redraw(root, config); };
    root.querySelectorAll("input, select").forEach(function (input) {
      input.addEventListener("input", again);
      input.addEventListener("change", again);
    });
    root.querySelector(".mx-reset").addEventListener("click", function () {
      ["m1", "m2", "m3", "s", "overflow"].forEach(function (k) {
        root.querySelector("[name=" + k + "]").value = String(config.initial[k]);
      });
      again();
    });
    again();
  }

  global.arclabMarginExplorer = {compute: compute, targetLogit: targetLogit, mount: mount};
  if (typeof module !== "undefined" && module.exports) {
    module.exports = global.arclabMarginExplorer;
  }
})(typeof window !== "undefined" ? window : globalThis);

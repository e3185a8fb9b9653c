// trex-ray report. Data arrives as JSON; every text goes on screen through textContent (never innerHTML).
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("trex-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16", "#4a5568"];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v, d) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(d === undefined ? 3 : d);
    return String(v);
  }
  function signed(v) { return v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + v.toFixed(3); }

  // val score -> colour: red (worst of the run) through yellow to green (best)
  function scoreColor(v, lo, hi) {
    if (v === null || v === undefined) return "#e2e8f0";
    var t = hi > lo ? (v - lo) / (hi - lo) : 1;
    var stops = [[215, 48, 39], [254, 224, 139], [26, 152, 80]];
    var i = t < 0.5 ? 0 : 1, u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
    var c = stops[i].map(function (a, j) { return Math.round(a + (stops[i + 1][j] - a) * u); });
    return "rgb(" + c.join(",") + ")";
  }

  // -- header ------------------------------------------------------------------------------------
  function header() {
    var runs = DATA.runs;
    document.getElementById("title").textContent = runs.length === 1
      ? "trex-ray: " + (runs[0].task || "") + " on " + (runs[0].base_model || "") + " (" + runs[0].run + ")"
      : "trex-ray: " + runs.length + " runs compared";
    var s = document.getElementById("summary");
    runs.forEach(function (r) {
      var f = r.final;
      var line = el("div", {class: "final"});
      line.textContent = r.label + " · best node " + f.best + " [" + f.direction + "]: test " + r.metric + " " +
        fmt(f.test) + " vs baseline " + fmt(f.baseline_test) + " (" + signed(f.gain) +
        (f.relative_gain !== null && f.relative_gain !== undefined ? ", " + (f.relative_gain >= 0 ? "+" : "") +
          (100 * f.relative_gain).toFixed(1) + "% relative" : "") + "); val " + fmt(f.val) + " vs " +
        fmt(f.baseline_val) + " · " + (r.nodes.length - 1) + " trials" +
        (r.stop_reason ? " · stopped by " + r.stop_reason : "");
      s.appendChild(line);
    });
  }

  // -- the tree ----------------------------------------------------------------------------------
  var selected = null;
  function drawTree(run, ri, host) {
    var box = el("div", {class: "run"});
    box.appendChild(el("div", {class: "run-head"}, run.label));
    var scores = run.nodes.filter(function (n) { return n.status === "ok" && n.val !== null; })
      .map(function (n) { return n.val; });
    var lo = Math.min.apply(null, scores), hi = Math.max.apply(null, scores);
    var maxCost = Math.max.apply(null, run.nodes.map(function (n) { return n.cost_s || 0; }).concat([1e-9]));
    var maxX = Math.max.apply(null, run.nodes.map(function (n) { return n.x; }).concat([0]));
    var maxD = Math.max.apply(null, run.nodes.map(function (n) { return n.depth; }).concat([0]));
    var dx = 72, dy = 70, pad = 30;
    var w = Math.max(300, (maxX + 1) * dx + 2 * pad), h = (maxD + 1) * dy + 2 * pad;
    var svg = sv("svg", {width: w, height: h, viewBox: "0 0 " + w + " " + h, "data-run": ri});
    var byId = {};
    run.nodes.forEach(function (n) { byId[n.id] = n; });
    function px(n) { return pad + n.x * dx + dx / 2; }
    function py(n) { return pad + n.depth * dy; }
    run.nodes.forEach(function (n) {
      if (n.parent_id === null || !(n.parent_id in byId)) return;
      var p = byId[n.parent_id];
      var onPath = n.best_path && p.best_path;
      svg.appendChild(sv("path", {class: "edge" + (onPath ? " best-path" : ""),
        d: "M" + px(p) + "," + py(p) + " C" + px(p) + "," + (py(p) + py(n)) / 2 + " " + px(n) + "," +
           (py(p) + py(n)) / 2 + " " + px(n) + "," + py(n)}));
    });
    run.nodes.forEach(function (n) {
      var r = 7 + 13 * Math.sqrt((n.cost_s || 0) / maxCost);
      var g = sv("g", {class: "node " + n.status + (n.best_path ? " best-path" : ""), "data-node": n.id,
                       "data-run": ri, transform: "translate(" + px(n) + "," + py(n) + ")"});
      g.appendChild(sv("circle", {r: r, fill: n.status === "ok" ? scoreColor(n.val, lo, hi) : "#fff"}));
      if (n.status === "failed") {
        var d = r * 0.6;
        g.appendChild(sv("line", {class: "cross", x1: -d, y1: -d, x2: d, y2: d}));
        g.appendChild(sv("line", {class: "cross", x1: -d, y1: d, x2: d, y2: -d}));
      }
      g.appendChild(sv("text", {x: r + 3, y: 4}, n.id + (n.best ? " ★" : "")));
      g.appendChild(sv("title", {}, "node " + n.id + ": " + n.direction + " · " + n.status +
        (n.val !== null ? " · val " + fmt(n.val) : "")));
      g.addEventListener("click", function () { select(ri, n.id); });
      svg.appendChild(g);
    });
    var wrap = el("div", {class: "tree"});
    wrap.appendChild(svg);
    box.appendChild(wrap);
    box.appendChild(el("div", {class: "legend"}, "colour: val score (red low, green high) · size: accelerator time · " +
      "✕ failed · gold: the path to the best node (★) · baseline val " + fmt(run.final.baseline_val)));
    host.appendChild(box);
  }

  // -- curves ------------------------------------------------------------------------------------
  function drawCurve(host, key, xlabel) {
    var w = 360, h = 220, L = 48, B = 36, T = 12, R = 12;
    var pts = [];
    DATA.runs.forEach(function (r) { r.curve.forEach(function (c) { if (c.best !== null) pts.push(c); }); });
    if (!pts.length) return;
    var xmax = Math.max.apply(null, pts.map(function (c) { return c[key]; }).concat([1e-9]));
    var ys = pts.map(function (c) { return c.best; });
    var ymin = Math.min.apply(null, ys), ymax = Math.max.apply(null, ys);
    if (ymax - ymin < 1e-9) { ymax += 0.05; ymin -= 0.05; }
    function X(v) { return L + (w - L - R) * v / xmax; }
    function Y(v) { return T + (h - T - B) * (1 - (v - ymin) / (ymax - ymin)); }
    var svg = sv("svg", {width: w, height: h, class: "curve", "data-x": key});
    svg.appendChild(sv("line", {class: "axis", x1: L, y1: h - B, x2: w - R, y2: h - B}));
    svg.appendChild(sv("line", {class: "axis", x1: L, y1: T, x2: L, y2: h - B}));
    svg.appendChild(sv("text", {x: (L + w - R) / 2, y: h - 6, "text-anchor": "middle"}, xlabel));
    svg.appendChild(sv("text", {x: L - 4, y: T + 8, "text-anchor": "end"}, fmt(ymax)));
    svg.appendChild(sv("text", {x: L - 4, y: h - B, "text-anchor": "end"}, fmt(ymin)));
    svg.appendChild(sv("text", {x: w - R, y: h - B + 14, "text-anchor": "end"}, fmt(xmax, key === "trial" ? 0 : 4)));
    DATA.runs.forEach(function (r, i) {
      var c = r.curve.filter(function (p) { return p.best !== null; });
      var d = c.map(function (p, j) {  // best-so-far is a step function
        return j === 0 ? "M" + X(p[key]) + "," + Y(p.best) : "H" + X(p[key]) + " V" + Y(p.best);
      }).join(" ");
      var color = COLORS[i % COLORS.length];
      svg.appendChild(sv("path", {class: "line", d: d, stroke: color, "data-run": i}));
      svg.appendChild(sv("text", {x: L + 6, y: T + 14 + 13 * i, fill: color}, r.label));
    });
    host.appendChild(svg);
  }

  // -- detail panel --------------------------------------------------------------------------------
  function section(panel, title) { panel.appendChild(el("h3", {}, title)); }
  function kvTable(rows) {
    var t = el("table");
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("th", {}, r[0]));
      tr.appendChild(el("td", {}, fmt(r[1])));
      t.appendChild(tr);
    });
    return t;
  }
  function lossCurve(curve) {
    var w = 300, h = 110, P = 8;
    var lo = Math.min.apply(null, curve), hi = Math.max.apply(null, curve);
    if (hi - lo < 1e-12) hi = lo + 1;
    var svg = sv("svg", {width: w, height: h, class: "loss"});
    var d = curve.map(function (v, i) {
      return (i ? "L" : "M") + (P + (w - 2 * P) * i / Math.max(1, curve.length - 1)) + "," +
        (P + (h - 2 * P) * (1 - (v - lo) / (hi - lo)));
    }).join(" ");
    svg.appendChild(sv("path", {class: "line", d: d, stroke: "#2b6cb0"}));
    svg.appendChild(sv("text", {x: w - P, y: P + 8, "text-anchor": "end"}, "loss " + fmt(hi)));
    svg.appendChild(sv("text", {x: w - P, y: h - P, "text-anchor": "end"}, fmt(lo)));
    return svg;
  }

  function valCurve(curve, kept) {  // [[step, score], ...]: the in-training val evaluations
    var w = 300, h = 110, P = 8;
    var steps = curve.map(function (p) { return p[0]; }), scores = curve.map(function (p) { return p[1]; });
    var lo = Math.min.apply(null, scores), hi = Math.max.apply(null, scores);
    if (hi - lo < 1e-12) { lo = Math.max(0, lo - 0.5); hi = lo + 1; }
    var last = Math.max.apply(null, steps) || 1;
    var x = function (s) { return P + (w - 2 * P) * s / last; };
    var y = function (v) { return P + (h - 2 * P) * (1 - (v - lo) / (hi - lo)); };
    var svg = sv("svg", {width: w, height: h, class: "val"});
    var d = curve.map(function (p, i) { return (i ? "L" : "M") + x(p[0]) + "," + y(p[1]); }).join(" ");
    svg.appendChild(sv("path", {class: "line", d: d, stroke: "#2f855a"}));
    curve.forEach(function (p) {
      svg.appendChild(sv("circle", {cx: x(p[0]), cy: y(p[1]), r: p[0] === kept ? 5 : 2.5,
                                    fill: p[0] === kept ? "#2f855a" : "#fff", stroke: "#2f855a"}));
    });
    svg.appendChild(sv("text", {x: w - P, y: P + 8, "text-anchor": "end"}, "val " + fmt(hi)));
    svg.appendChild(sv("text", {x: w - P, y: h - P, "text-anchor": "end"}, fmt(lo) + " (step " + last + ")"));
    return svg;
  }

  function select(ri, nid) {
    var run = DATA.runs[ri], n = null;
    run.nodes.forEach(function (m) { if (m.id === nid) n = m; });
    if (!n) return;
    if (selected) selected.classList.remove("selected");
    selected = document.querySelector('g.node[data-run="' + ri + '"][data-node="' + nid + '"]');
    if (selected) selected.classList.add("selected");
    var panel = document.getElementById("detail");
    while (panel.firstChild) panel.removeChild(panel.firstChild);
    panel.setAttribute("data-node", nid);
    panel.appendChild(el("h2", {id: "detail-title"}, "node " + n.id + (n.parent_id !== null ? " ← " + n.parent_id : "") +
      ": " + n.direction));
    var pills = el("div");
    pills.appendChild(el("span", {class: "pill " + n.status}, n.status));
    if (n.best) pills.appendChild(el("span", {class: "pill"}, "best"));
    panel.appendChild(pills);
    if (n.rationale) { section(panel, "Rationale"); panel.appendChild(el("div", {class: "text", id: "detail-rationale"}, n.rationale)); }
    section(panel, "Metrics");
    panel.appendChild(kvTable([["val " + (run.metric || "score"), n.val], ["test", n.test], ["reward", n.reward],
      ["visits", n.visits], ["seconds", n.seconds], ["accelerator s", n.cost_s]].concat(
      Object.keys(n.metrics).map(function (k) { return ["val." + k, n.metrics[k]]; }))));
    panel.lastChild.id = "detail-metrics";
    if (n.error) {
      section(panel, "Error");
      panel.appendChild(el("div", {class: "error"}, n.error.stage + " · " + (n.error.type || "") + ": " + n.error.message));
    }
    if (n.diagnosis) { section(panel, "Diagnosis"); panel.appendChild(el("div", {class: "text", id: "detail-diagnosis"}, n.diagnosis)); }
    if (n.plan.length) {
      section(panel, "Plan (highlighted: changed from the parent)");
      var t = el("table", {id: "detail-plan"});
      var head = el("tr");
      ["setting", "this node", "parent"].forEach(function (c) { head.appendChild(el("th", {}, c)); });
      t.appendChild(head);
      n.plan.forEach(function (r) {
        var tr = el("tr", r[3] ? {class: "changed"} : {});
        tr.appendChild(el("td", {}, r[0]));
        tr.appendChild(el("td", {}, r[1] === null ? "–" : r[1]));
        tr.appendChild(el("td", {class: "muted"}, r[2] === null ? "–" : r[2]));
        t.appendChild(tr);
      });
      panel.appendChild(t);
    }
    if (n.ops.length) {
      section(panel, "Data: " + fmt(n.rows) + " training rows" + (n.cache_hit ? " (reused from the cache)" : ""));
      var ot = el("table", {id: "detail-ops"});
      var oh = el("tr");
      ["op", "rows in", "rows out", "dropped"].forEach(function (c) { oh.appendChild(el("th", {}, c)); });
      ot.appendChild(oh);
      n.ops.forEach(function (o) {
        var tr = el("tr");
        tr.appendChild(el("td", {}, o.op));
        tr.appendChild(el("td", {}, fmt(o.rows_in)));
        tr.appendChild(el("td", {}, fmt(o.rows_out)));
        tr.appendChild(el("td", {}, Object.keys(o.dropped || {}).map(function (k) { return k + ": " + o.dropped[k]; }).join(", ")));
        ot.appendChild(tr);
      });
      panel.appendChild(ot);
    }
    if (n.val_curve && n.val_curve.length) {
      section(panel, "Val during training (filled: the kept checkpoint)");
      panel.appendChild(valCurve(n.val_curve, n.kept_step));
    }
    if (n.loss_curve.length) {
      section(panel, "Training loss");
      panel.appendChild(lossCurve(n.loss_curve));
      panel.appendChild(kvTable(Object.keys(n.train).map(function (k) { return [k, n.train[k]]; })));
    }
    if (n.bad_cases.length) {
      section(panel, "Bad cases (" + n.bad_cases.length + " of " + n.num_bad + " shown)");
      var bt = el("table", {id: "detail-bad-cases"});
      var bh = el("tr");
      ["input", "expected", "predicted"].forEach(function (c) { bh.appendChild(el("th", {}, c)); });
      bt.appendChild(bh);
      n.bad_cases.forEach(function (b) {
        var tr = el("tr");
        tr.appendChild(el("td", {class: "text"}, b.input));
        tr.appendChild(el("td", {class: "text"}, b.expected));
        tr.appendChild(el("td", {class: "text"}, b.got));
        bt.appendChild(tr);
      });
      panel.appendChild(bt);
    }
  }

  // -- page ----------------------------------------------------------------------------------------
  header();
  var host = document.getElementById("runs");
  DATA.runs.forEach(function (r, i) { drawTree(r, i, host); });
  drawCurve(document.getElementById("curve-trials"), "trial", "trials");
  drawCurve(document.getElementById("curve-acc"), "acc_h", "accelerator hours");
  var ins = document.getElementById("insights");
  DATA.runs.forEach(function (r) {
    r.insights.forEach(function (t) { ins.appendChild(el("li", {}, (DATA.runs.length > 1 ? r.label + ": " : "") + t)); });
  });
  if (!ins.children.length) ins.appendChild(el("li", {class: "muted"}, "none yet"));
  // what the researcher searched and found: related datasets (source, license, relevance), papers
  var res = document.getElementById("research");
  DATA.runs.forEach(function (r) {
    var who = DATA.runs.length > 1 ? r.label + ": " : "";
    (r.research.related || []).forEach(function (d) {
      res.appendChild(el("li", {}, who + "dataset " + d.name + " (" + d.origin + ", license " + (d.license || "unknown") +
        ", relevance " + d.score.toFixed(2) + ") " + (d.where || "")));
    });
    (r.research.read || []).forEach(function (x) {
      res.appendChild(el("li", {}, who + x.tool + " \u201c" + x.query + "\u201d: " + (x.found.join("; ") || "nothing found")));
    });
    if (r.research.notes) res.appendChild(el("li", {class: "muted"}, who + r.research.notes));
  });
  if (!res.children.length) res.appendChild(el("li", {class: "muted"}, "none"));
  document.body.setAttribute("data-ready", "1");
})();

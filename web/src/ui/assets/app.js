// ignis web UI: plain JavaScript, no build step. One panel ("g0") with Table and Graph tabs,
// plus the targets, TSDB status and runtime/build information pages.
"use strict";
(function () {
  // Line colours of the graph, in order; the UI test looks for these in a screenshot.
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  var PAGES = ["query", "graph", "targets", "tsdb-status", "status"];

  // Base path of the server (handles --web.route-prefix): the path without the page segment.
  var path = location.pathname.replace(/\/+$/, "");
  var segs = path.split("/");
  var page = segs[segs.length - 1];
  if (PAGES.indexOf(page) >= 0) { segs.pop(); } else { page = "graph"; }
  var BASE = segs.join("/") + "/";
  if (page === "query") page = "graph";

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "class") e.className = attrs[k];
      else if (k === "text") e.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) {
      if (c == null) return;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  function api(p, params) {
    var qs = params ? "?" + new URLSearchParams(params).toString() : "";
    return fetch(BASE + "api/v1/" + p + qs, { headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.text().then(function (t) {
          var j;
          try { j = JSON.parse(t); } catch (e) {
            throw new Error("HTTP " + r.status + ": " + t.slice(0, 500));
          }
          if (j.status !== "success") {
            throw new Error((j.errorType ? j.errorType + ": " : "") + (j.error || ("HTTP " + r.status)));
          }
          return j;
        });
      });
  }

  function metricName(m) {
    var name = m.__name__ || "";
    var parts = [];
    Object.keys(m).sort().forEach(function (k) {
      if (k !== "__name__") parts.push(k + "=" + JSON.stringify(m[k]));
    });
    return name + "{" + parts.join(", ") + "}";
  }

  // ---- durations and times -------------------------------------------------------------------
  var UNITS = { y: 31536000, w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
  function parseDuration(s) {
    s = (s || "").trim();
    if (!s) return null;
    if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s);
    var re = /(\d+)(ms|y|w|d|h|m|s)/g, m, total = 0, used = 0;
    while ((m = re.exec(s)) !== null) {
      total += m[2] === "ms" ? parseInt(m[1], 10) / 1000 : parseInt(m[1], 10) * UNITS[m[2]];
      used += m[0].length;
    }
    return used === s.length && total > 0 ? total : null;
  }
  function formatDuration(sec) {
    var out = "";
    ["y", "w", "d", "h", "m", "s"].forEach(function (u) {
      var n = Math.floor(sec / UNITS[u]);
      if (n > 0) { out += n + u; sec -= n * UNITS[u]; }
    });
    return out || "0s";
  }
  var STEPS = [60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000, 7776000, 31536000];
  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }
  function fmtTime(ms) {
    var d = new Date(ms);
    if (!isFinite(d.getTime())) return String(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  function parseTime(s) {
    s = (s || "").trim();
    if (!s) return null;
    if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s) * 1000;
    var m = /^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?)?Z?$/.exec(s);
    if (!m) return null;
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
  }
  function fmtValue(v) {
    if (v === null || v === undefined) return "";
    if (!isFinite(v)) return String(v);
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Math.round(v * 1000) / 1000);
  }

  // ---- the expression panel ------------------------------------------------------------------
  function graphPage(root) {
    var q = new URLSearchParams(location.search);
    var st = {
      expr: q.get("g0.expr") || "",
      tab: /^(1|table)$/i.test(q.get("g0.tab") || "") ? "table" : "graph",
      range: parseDuration(q.get("g0.range_input")) || 3600,
      end: parseTime(q.get("g0.end_input")),
      moment: parseTime(q.get("g0.moment_input")),
      step: parseDuration(q.get("g0.step_input")),
      stacked: q.get("g0.stacked") === "1",
      hidden: {}
    };
    if (q.get("g0.tab") === null && q.get("tab")) st.tab = /^(1|table)$/i.test(q.get("tab")) ? "table" : "graph";

    var expr = el("textarea", { id: "expr", rows: "1", placeholder: "Expression (press Shift+Enter for newlines)", spellcheck: "false" });
    expr.value = st.expr;
    expr.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); execute(); }
    });
    var execBtn = el("button", { class: "primary", id: "execute", onclick: execute, text: "Execute" });
    var tabTable = el("a", { id: "tab-table", text: "Table", onclick: function () { setTab("table"); } });
    var tabGraph = el("a", { id: "tab-graph", text: "Graph", onclick: function () { setTab("graph"); } });
    var alerts = el("div", { id: "alerts" });
    var stats = el("div", { class: "stats", id: "stats" });

    // Table controls.
    var momentIn = el("input", { type: "text", class: "end", placeholder: "Evaluation time", value: st.moment ? fmtTime(st.moment) : "" });
    momentIn.addEventListener("change", function () { st.moment = parseTime(momentIn.value); execute(); });
    var tableCtl = el("div", { class: "controls" }, [
      el("div", { class: "group" }, [
        el("button", { text: "\u2039", title: "back", onclick: function () { shiftMoment(-1); } }),
        momentIn,
        el("button", { text: "\u203a", title: "forward", onclick: function () { shiftMoment(1); } })
      ])
    ]);
    var tableBox = el("div", { id: "table" });

    // Graph controls.
    var rangeIn = el("input", { type: "text", class: "range", id: "range", value: formatDuration(st.range) });
    rangeIn.addEventListener("change", function () {
      var r = parseDuration(rangeIn.value);
      if (r) st.range = r;
      rangeIn.value = formatDuration(st.range);
      execute();
    });
    var endIn = el("input", { type: "text", class: "end", id: "end", placeholder: "End time (UTC)", value: st.end ? fmtTime(st.end) : "" });
    endIn.addEventListener("change", function () { st.end = parseTime(endIn.value); execute(); });
    var stepIn = el("input", { type: "text", class: "step", id: "step", placeholder: "Res. (s)", value: st.step ? String(st.step) : "" });
    stepIn.addEventListener("change", function () { st.step = parseDuration(stepIn.value); execute(); });
    var stackedIn = el("input", { type: "checkbox", id: "stacked" });
    stackedIn.checked = st.stacked;
    stackedIn.addEventListener("change", function () { st.stacked = stackedIn.checked; updateUrl(); if (lastRange) drawGraph(lastRange); });
    var graphCtl = el("div", { class: "controls" }, [
      el("div", { class: "group" }, [
        el("button", { text: "\u2212", title: "Shrink the time range", onclick: function () { zoom(-1); } }),
        rangeIn,
        el("button", { text: "+", title: "Widen the time range", onclick: function () { zoom(1); } })
      ]),
      el("div", { class: "group" }, [
        el("button", { text: "\u00ab", title: "Back", onclick: function () { shiftEnd(-1); } }),
        endIn,
        el("button", { text: "\u00bb", title: "Forward", onclick: function () { shiftEnd(1); } })
      ]),
      stepIn,
      el("label", {}, [stackedIn, " stacked"])
    ]);
    var canvas = el("canvas", { id: "graph" });
    var tooltip = el("div", { class: "tooltip" });
    var legend = el("div", { class: "legend", id: "legend" });
    var graphBox = el("div", { id: "graphbox" }, [el("div", { class: "graphwrap" }, [canvas, tooltip]), legend]);

    var tableTab = el("div", { class: "tabbody" }, [tableCtl, tableBox]);
    var graphTab = el("div", { class: "tabbody" }, [graphCtl, graphBox]);
    root.appendChild(el("div", { class: "panel" }, [
      el("div", { class: "exprrow" }, [expr, execBtn]),
      alerts,
      el("div", { class: "tabs" }, [tabTable, tabGraph]),
      tableTab, graphTab, stats
    ]));

    var lastRange = null, plot = null, seq = 0;

    function setTab(t) { st.tab = t; showTab(); execute(); }
    function showTab() {
      tabTable.className = st.tab === "table" ? "active" : "";
      tabGraph.className = st.tab === "graph" ? "active" : "";
      tableTab.style.display = st.tab === "table" ? "" : "none";
      graphTab.style.display = st.tab === "graph" ? "" : "none";
    }
    function zoom(dir) {
      var i = 0;
      while (i < STEPS.length - 1 && STEPS[i] < st.range) i++;
      if (dir < 0) st.range = STEPS[Math.max(0, STEPS[i] === st.range ? i - 1 : i - 1)] || STEPS[0];
      else st.range = STEPS[Math.min(STEPS.length - 1, STEPS[i] === st.range ? i + 1 : i)];
      rangeIn.value = formatDuration(st.range);
      execute();
    }
    function shiftEnd(dir) {
      var end = st.end || Date.now();
      st.end = end + dir * st.range * 500;
      endIn.value = fmtTime(st.end);
      execute();
    }
    function shiftMoment(dir) {
      var m = st.moment || Date.now();
      st.moment = m + dir * st.range * 500;
      momentIn.value = fmtTime(st.moment);
      execute();
    }
    function updateUrl() {
      var p = new URLSearchParams();
      p.set("g0.expr", st.expr);
      p.set("g0.tab", st.tab === "graph" ? "0" : "1");
      p.set("g0.stacked", st.stacked ? "1" : "0");
      p.set("g0.range_input", formatDuration(st.range));
      if (st.end) p.set("g0.end_input", fmtTime(st.end));
      if (st.moment) p.set("g0.moment_input", fmtTime(st.moment));
      if (st.step) p.set("g0.step_input", String(st.step));
      history.replaceState(null, "", "?" + p.toString());
    }
    function showAlerts(err, warnings, infos) {
      alerts.textContent = "";
      if (err) alerts.appendChild(el("div", { class: "alert error", id: "error", text: "Error: " + err }));
      (warnings || []).forEach(function (w) { alerts.appendChild(el("div", { class: "alert warning", text: "Warning: " + w })); });
      (infos || []).forEach(function (w) { alerts.appendChild(el("div", { class: "alert info", text: "Info: " + w })); });
    }

    function execute() {
      st.expr = expr.value;
      updateUrl();
      showTab();
      if (!st.expr.trim()) { showAlerts(null); return; }
      var my = ++seq, t0 = performance.now();
      var req;
      if (st.tab === "table") {
        var params = { query: st.expr };
        if (st.moment) params.time = String(st.moment / 1000);
        req = api("query", params).then(function (j) {
          if (my !== seq) return;
          renderTable(j.data);
          showAlerts(null, j.warnings, j.infos);
          stats.textContent = "Load time: " + Math.round(performance.now() - t0) + "ms   Result series: " + resultCount(j.data);
        });
      } else {
        var end = (st.end || Date.now()) / 1000;
        var start = end - st.range;
        var step = st.step || Math.max(Math.floor(st.range / 250), 1);
        req = api("query_range", { query: st.expr, start: String(start), end: String(end), step: String(step) })
          .then(function (j) {
            if (my !== seq) return;
            lastRange = { data: j.data, start: start * 1000, end: end * 1000, step: step * 1000 };
            drawGraph(lastRange);
            showAlerts(null, j.warnings, j.infos);
            stats.textContent = "Load time: " + Math.round(performance.now() - t0) + "ms   Resolution: " + step + "s   Result series: " + resultCount(j.data);
          });
      }
      req.catch(function (e) {
        if (my !== seq) return;
        showAlerts(e.message);
        stats.textContent = "";
      });
    }
    function resultCount(d) { return Array.isArray(d.result) ? d.result.length : 1; }

    function renderTable(d) {
      tableBox.textContent = "";
      var rows = [];
      if (d.resultType === "vector") {
        d.result.forEach(function (s) { rows.push([metricName(s.metric), s.value[1]]); });
      } else if (d.resultType === "matrix") {
        d.result.forEach(function (s) {
          rows.push([metricName(s.metric), s.values.map(function (v) { return v[1] + " @" + v[0]; }).join("\n")]);
        });
      } else if (d.resultType === "scalar") {
        rows.push(["scalar", d.result[1]]);
      } else if (d.resultType === "string") {
        rows.push(["string", d.result[1]]);
      }
      if (!rows.length) { tableBox.appendChild(el("div", { class: "muted", text: "Empty query result" })); return; }
      var tb = el("tbody");
      rows.forEach(function (r) {
        tb.appendChild(el("tr", {}, [el("td", { class: "series", text: r[0] }), el("td", { class: "value", text: r[1] })]));
      });
      tableBox.appendChild(el("table", { class: "data", id: "result-table" }, [
        el("thead", {}, [el("tr", {}, [el("th", { text: "Series" }), el("th", { text: "Value" })])]), tb
      ]));
    }

    // ---- graph drawing -----------------------------------------------------------------------
    function niceStep(span, n) {
      var raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
      return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    }
    var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

    function drawGraph(r) {
      var d = r.data;
      legend.textContent = "";
      var series = [];
      if (d.resultType === "matrix") {
        d.result.forEach(function (s, i) {
          series.push({ name: metricName(s.metric), color: COLORS[i % COLORS.length], points: s.values.map(function (v) { return [v[0] * 1000, parseFloat(v[1])]; }) });
        });
      } else if (d.resultType === "scalar") {
        series.push({ name: "scalar", color: COLORS[0], points: [[r.start, parseFloat(d.result[1])], [r.end, parseFloat(d.result[1])]] });
      }
      series.forEach(function (s) {
        s.hidden = !!st.hidden[s.name];
        legend.appendChild(el("div", {
          class: s.hidden ? "off" : "", title: "click to show/hide",
          onclick: function () { st.hidden[s.name] = !st.hidden[s.name]; drawGraph(r); }
        }, [el("span", { class: "swatch", style: "background:" + s.color }), el("span", { text: s.name })]));
      });
      // Stacking: each point adds the visible series below it at the same timestamp.
      var visible = series.filter(function (s) { return !s.hidden; });
      if (st.stacked) {
        var acc = {};
        visible.forEach(function (s) {
          s.draw = s.points.map(function (p) {
            var base = acc[p[0]] || 0, v = isFinite(p[1]) ? p[1] : 0;
            acc[p[0]] = base + v;
            return [p[0], base + v, base];
          });
        });
      } else {
        visible.forEach(function (s) { s.draw = s.points.map(function (p) { return [p[0], p[1], 0]; }); });
      }
      var ymin = Infinity, ymax = -Infinity;
      visible.forEach(function (s) {
        s.draw.forEach(function (p) { if (isFinite(p[1])) { ymin = Math.min(ymin, p[1], st.stacked ? p[2] : p[1]); ymax = Math.max(ymax, p[1]); } });
      });
      if (!isFinite(ymin)) { ymin = 0; ymax = 1; }
      if (st.stacked) ymin = Math.min(ymin, 0);
      if (ymin === ymax) { ymin -= 1; ymax += 1; }
      var ys = niceStep(ymax - ymin, 6);
      ymin = Math.floor(ymin / ys) * ys; ymax = Math.ceil(ymax / ys) * ys;

      var dpr = window.devicePixelRatio || 1;
      var W = canvas.clientWidth || 800, H = canvas.clientHeight || 420;
      canvas.width = W * dpr; canvas.height = H * dpr;
      var ctx = canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, W, H);
      ctx.font = "11px sans-serif";
      var left = 10, bottom = 22, top = 8, right = 12;
      for (var yv = ymin; yv <= ymax + ys / 2; yv += ys) left = Math.max(left, ctx.measureText(fmtValue(yv)).width + 12);
      var pw = W - left - right, ph = H - top - bottom;
      function X(t) { return left + (t - r.start) / (r.end - r.start) * pw; }
      function Y(v) { return top + (1 - (v - ymin) / (ymax - ymin)) * ph; }
      plot = { X: X, Y: Y, left: left, top: top, pw: pw, ph: ph, series: visible, r: r };

      // Grid, axes and labels.
      ctx.strokeStyle = "#e6e6e6"; ctx.fillStyle = "#555"; ctx.lineWidth = 1;
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (yv = ymin; yv <= ymax + ys / 2; yv += ys) {
        var y = Math.round(Y(yv)) + 0.5;
        ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
        ctx.fillText(fmtValue(Math.abs(yv) < ys / 1e6 ? 0 : yv), left - 6, y);
      }
      var span = (r.end - r.start) / 1000, ts = TIME_STEPS[TIME_STEPS.length - 1];
      for (var i = 0; i < TIME_STEPS.length; i++) if (span / TIME_STEPS[i] <= 8) { ts = TIME_STEPS[i]; break; }
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      for (var t = Math.ceil(r.start / 1000 / ts) * ts; t * 1000 <= r.end; t += ts) {
        var x = Math.round(X(t * 1000)) + 0.5, dt = new Date(t * 1000);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + ph); ctx.stroke();
        var lbl = ts >= 86400 ? (dt.getUTCMonth() + 1) + "/" + dt.getUTCDate()
          : pad(dt.getUTCHours()) + ":" + pad(dt.getUTCMinutes()) + (ts < 60 ? ":" + pad(dt.getUTCSeconds()) : "");
        var half = ctx.measureText(lbl).width / 2;
        ctx.fillText(lbl, Math.min(x, W - half - 1), top + ph + 5);
      }
      ctx.strokeStyle = "#999";
      ctx.beginPath(); ctx.moveTo(left + 0.5, top); ctx.lineTo(left + 0.5, top + ph + 0.5); ctx.lineTo(left + pw, top + ph + 0.5); ctx.stroke();

      // Lines; a gap longer than 1.5 steps breaks the line (as Prometheus's graph does).
      ctx.save();
      ctx.beginPath(); ctx.rect(left, top, pw, ph); ctx.clip();
      ctx.lineWidth = 2; ctx.lineJoin = "round";
      visible.forEach(function (s) {
        ctx.strokeStyle = s.color;
        if (st.stacked) { ctx.fillStyle = s.color; ctx.globalAlpha = 0.25; fillStacked(ctx, s, r, X, Y); ctx.globalAlpha = 1; }
        ctx.beginPath();
        var prev = null;
        s.draw.forEach(function (p) {
          if (!isFinite(p[1])) { prev = null; return; }
          if (prev === null || p[0] - prev > r.step * 1.5) ctx.moveTo(X(p[0]), Y(p[1]));
          else ctx.lineTo(X(p[0]), Y(p[1]));
          prev = p[0];
        });
        ctx.stroke();
        if (s.draw.length === 1 && isFinite(s.draw[0][1])) {
          ctx.fillStyle = s.color; ctx.beginPath(); ctx.arc(X(s.draw[0][0]), Y(s.draw[0][1]), 3, 0, 7); ctx.fill();
        }
      });
      ctx.restore();
      if (!series.length) {
        ctx.fillStyle = "#6c757d"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
        ctx.fillText("no data", left + pw / 2, top + ph / 2);
      }
    }
    function fillStacked(ctx, s, r, X, Y) {
      var run = [];
      function flush() {
        if (run.length < 2) { run = []; return; }
        ctx.beginPath();
        ctx.moveTo(X(run[0][0]), Y(run[0][1]));
        run.forEach(function (p) { ctx.lineTo(X(p[0]), Y(p[1])); });
        for (var i = run.length - 1; i >= 0; i--) ctx.lineTo(X(run[i][0]), Y(run[i][2]));
        ctx.closePath(); ctx.fill();
        run = [];
      }
      var prev = null;
      s.draw.forEach(function (p) {
        if (!isFinite(p[1]) || (prev !== null && p[0] - prev > r.step * 1.5)) flush();
        if (isFinite(p[1])) run.push(p);
        prev = p[0];
      });
      flush();
    }

    // Hover: the nearest sample of each visible series at the mouse time.
    canvas.addEventListener("mousemove", function (e) {
      if (!plot) return;
      var rect = canvas.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
      if (mx < plot.left || mx > plot.left + plot.pw) { tooltip.style.display = "none"; return; }
      var best = null;
      plot.series.forEach(function (s) {
        s.draw.forEach(function (p) {
          if (!isFinite(p[1])) return;
          var dx = plot.X(p[0]) - mx, dy = plot.Y(p[1]) - my, dd = dx * dx + dy * dy;
          if (!best || dd < best.dd) best = { dd: dd, s: s, p: p };
        });
      });
      if (!best || best.dd > 2500) { tooltip.style.display = "none"; return; }
      var raw = st.stacked ? best.p[1] - best.p[2] : best.p[1];
      tooltip.textContent = fmtTime(best.p[0]) + "  " + best.s.name + ": " + raw;
      tooltip.style.display = "block";
      tooltip.style.left = Math.min(mx + 12, rect.width - tooltip.offsetWidth) + "px";
      tooltip.style.top = (my + 12) + "px";
    });
    canvas.addEventListener("mouseleave", function () { tooltip.style.display = "none"; });
    window.addEventListener("resize", function () { if (lastRange && st.tab === "graph") drawGraph(lastRange); });

    showTab();
    if (st.expr) execute();
    else expr.focus();
  }

  // ---- status pages ----------------------------------------------------------------------------
  function kvTable(obj, id) {
    var tb = el("tbody");
    Object.keys(obj).forEach(function (k) {
      var v = obj[k];
      tb.appendChild(el("tr", {}, [el("th", { text: k }), el("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })]));
    });
    return el("table", { class: "data", id: id }, [tb]);
  }
  function listTable(title, rows, id) {
    var tb = el("tbody");
    (rows || []).forEach(function (r) { tb.appendChild(el("tr", {}, [el("td", { class: "series", text: r.name }), el("td", { text: String(r.value) })])); });
    return [el("h3", { text: title }), el("table", { class: "data", id: id }, [
      el("thead", {}, [el("tr", {}, [el("th", { text: "Name" }), el("th", { text: "Count" })])]), tb])];
  }
  function errorBox(root, e) { root.appendChild(el("div", { class: "alert error", text: "Error: " + e.message })); }

  function targetsPage(root) {
    root.appendChild(el("h2", { text: "Targets" }));
    api("targets").then(function (j) {
      var pools = {};
      (j.data.activeTargets || []).forEach(function (t) { (pools[t.scrapePool] = pools[t.scrapePool] || []).push(t); });
      var names = Object.keys(pools).sort();
      if (!names.length) root.appendChild(el("div", { class: "muted", id: "no-targets", text: "No active targets." }));
      names.forEach(function (name) {
        var ts = pools[name], up = ts.filter(function (t) { return t.health === "up"; }).length;
        root.appendChild(el("h3", { text: name + " (" + up + "/" + ts.length + " up)" }));
        var tb = el("tbody");
        ts.forEach(function (t) {
          var labels = el("td");
          Object.keys(t.labels || {}).sort().forEach(function (k) { labels.appendChild(el("span", { class: "label", text: k + "=\"" + t.labels[k] + "\"" })); });
          var dur = t.lastScrapeDuration !== undefined ? Math.round(t.lastScrapeDuration * 1000) + "ms" : "";
          var ago = t.lastScrape && !/^0001/.test(t.lastScrape) ? Math.round((Date.now() - Date.parse(t.lastScrape)) / 1000) + "s ago" : "never";
          tb.appendChild(el("tr", {}, [
            el("td", {}, [el("a", { href: t.scrapeUrl, text: t.scrapeUrl })]),
            el("td", {}, [el("span", { class: "badge " + (t.health || "unknown"), text: (t.health || "unknown").toUpperCase() })]),
            labels, el("td", { text: ago }), el("td", { text: dur }), el("td", { class: "muted", text: t.lastError || "" })
          ]));
        });
        root.appendChild(el("table", { class: "data" }, [el("thead", {}, [el("tr", {}, ["Endpoint", "State", "Labels", "Last Scrape", "Scrape Duration", "Error"].map(function (h) { return el("th", { text: h }); }))]), tb]));
      });
    }).catch(function (e) { errorBox(root, e); });
  }

  function tsdbPage(root) {
    root.appendChild(el("h2", { text: "TSDB Status" }));
    api("status/tsdb").then(function (j) {
      var d = j.data, h = d.headStats || {};
      root.appendChild(el("h3", { text: "Head Stats" }));
      root.appendChild(kvTable({
        "Number of Series": h.numSeries, "Number of Chunks": h.chunkCount, "Number of Label Pairs": h.numLabelPairs,
        "Current Min Time": h.minTime !== undefined ? fmtTime(h.minTime) + " (" + h.minTime + ")" : "",
        "Current Max Time": h.maxTime !== undefined ? fmtTime(h.maxTime) + " (" + h.maxTime + ")" : ""
      }, "head-stats"));
      listTable("Top 10 label names with value count", d.labelValueCountByLabelName, "label-value-count").forEach(function (e) { root.appendChild(e); });
      listTable("Top 10 series count by metric names", d.seriesCountByMetricName, "series-count").forEach(function (e) { root.appendChild(e); });
      listTable("Top 10 label names with high memory usage", d.memoryInBytesByLabelName, "memory-by-label").forEach(function (e) { root.appendChild(e); });
      listTable("Top 10 series count by label value pairs", d.seriesCountByLabelValuePair, "series-by-pair").forEach(function (e) { root.appendChild(e); });
    }).catch(function (e) { errorBox(root, e); });
  }

  function statusPage(root) {
    root.appendChild(el("h2", { text: "Runtime & Build Information" }));
    var rt = el("div"), bi = el("div"), fl = el("div");
    root.appendChild(el("h3", { text: "Runtime Information" })); root.appendChild(rt);
    root.appendChild(el("h3", { text: "Build Information" })); root.appendChild(bi);
    root.appendChild(el("h3", { text: "Command-Line Flags" })); root.appendChild(fl);
    api("status/runtimeinfo").then(function (j) { rt.appendChild(kvTable(j.data, "runtimeinfo")); }).catch(function (e) { errorBox(rt, e); });
    api("status/buildinfo").then(function (j) { bi.appendChild(kvTable(j.data, "buildinfo")); }).catch(function (e) { errorBox(bi, e); });
    api("status/flags").then(function (j) {
      var sorted = {};
      Object.keys(j.data).sort().forEach(function (k) { sorted[k] = j.data[k]; });
      fl.appendChild(kvTable(sorted, "flags"));
    }).catch(function (e) { errorBox(fl, e); });
  }

  document.querySelectorAll("[data-nav]").forEach(function (a) {
    a.setAttribute("href", BASE + a.getAttribute("data-nav"));
    if (a.getAttribute("data-nav") === page && !a.classList.contains("brand")) a.classList.add("active");
  });
  var root = document.getElementById("app");
  root.textContent = "";
  ({ graph: graphPage, targets: targetsPage, "tsdb-status": tsdbPage, status: statusPage })[page](root);
  document.title = "ignis - " + ({ graph: "Graph", targets: "Targets", "tsdb-status": "TSDB Status", status: "Status" })[page];
})();

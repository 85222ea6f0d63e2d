/* wilddet report: hand-written, no libraries, works from file:// (data come as <script> files
   that call WD.chunk(name, payload)). State lives in the address hash so that a view can be
   shared and tested:
     #sort=KEY&dir=asc|desc&filter=TEXT         per-class AP table (KEY: name, label, num_gt,
                                                ap0.., gain1.., fp0..)
     #pr=LabelName                              PR curve class
     #grun=0&gclass=NAME&gerror=TYPE|tp|any&gscore=0.3&gpage=1   gallery                      */
"use strict";
var WD = (function () {
  var data = {}, waiting = {};
  var SVGNS = "http://www.w3.org/2000/svg";

  function chunk(name, payload) {
    data[name] = payload;
    (waiting[name] || []).forEach(function (f) { f(payload); });
    delete waiting[name];
  }
  function load(name) {  // Promise of a data/NAME.js payload, script added on first use
    if (data[name]) return Promise.resolve(data[name]);
    return new Promise(function (resolve) {
      var first = !waiting[name];
      (waiting[name] = waiting[name] || []).push(resolve);
      if (first) {
        var s = document.createElement("script");
        s.src = "data/" + name + ".js";
        document.head.appendChild(s);
      }
    });
  }
  function params() { return new URLSearchParams(location.hash.replace(/^#/, "")); }
  function setParams(update) {
    var p = params();
    Object.keys(update).forEach(function (k) {
      if (update[k] === null || update[k] === "") p.delete(k); else p.set(k, update[k]);
    });
    history.replaceState(null, "", "#" + p.toString());
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function fmt(x, signed) {
    if (x === null || x === undefined || isNaN(x)) return "n/a";
    var s = x.toFixed(4);
    return signed && x >= 0 ? "+" + s : s;
  }

  /* ---- per-class AP table ---------------------------------------------------------------- */
  function apTable() {
    var d = data.ap, table = document.getElementById("ap-table");
    if (!d || !table) return;
    var cols = [{key: "name", title: "class", text: true}, {key: "label", title: "LabelName", text: true},
                {key: "num_gt", title: "#GT"}];
    d.runs.forEach(function (r, i) { cols.push({key: "ap" + i, title: "AP " + r}); });
    d.runs.slice(1).forEach(function (r, i) {
      cols.push({key: "gain" + (i + 1), title: "gain " + r + " \u2212 " + d.runs[0], gain: true});
    });
    d.fp_runs.forEach(function (r, i) { cols.push({key: "fp" + i, title: "FPs " + r}); });
    var rows = d.rows.map(function (r) {
      var o = {name: r[0], label: r[1], num_gt: r[2]};
      r[3].forEach(function (a, i) { o["ap" + i] = a; });
      for (var i = 1; i < r[3].length; i++)
        o["gain" + i] = (r[3][i] === null || r[3][0] === null) ? null : r[3][i] - r[3][0];
      r[4].forEach(function (f, i) { o["fp" + i] = f; });
      return o;
    });
    var thead = el("thead"), tr = el("tr");
    cols.forEach(function (c) {
      var th = el("th", {scope: "col", "data-key": c.key, "aria-sort": "none"});
      var b = el("button", {type: "button"}, c.title);
      b.addEventListener("click", function () {
        var p = params(), same = p.get("sort") === c.key;
        var dir = same ? (p.get("dir") === "asc" ? "desc" : "asc") : (c.text ? "asc" : "desc");
        setParams({sort: c.key, dir: dir});
        render();
      });
      th.appendChild(b);
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
    var tbody = el("tbody");
    table.appendChild(tbody);
    var input = document.getElementById("ap-filter");
    input.value = params().get("filter") || "";
    input.addEventListener("input", function () { setParams({filter: input.value}); render(); });

    function render() {
      var p = params(), key = p.get("sort"), dir = p.get("dir") === "asc" ? 1 : -1;
      var needle = (p.get("filter") || "").toLowerCase();
      var shown = rows.slice();
      if (key && cols.some(function (c) { return c.key === key; })) {
        shown.sort(function (a, b) {
          var x = a[key], y = b[key];
          if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
          if (y === null || y === undefined) return -1;  // missing values always last
          if (typeof x === "string") return dir * x.localeCompare(y);
          return dir * (x - y);
        });
      }
      thead.querySelectorAll("th").forEach(function (th) {
        th.setAttribute("aria-sort", th.getAttribute("data-key") === key ?
                        (dir === 1 ? "ascending" : "descending") : "none");
      });
      tbody.textContent = "";
      var count = 0;
      shown.forEach(function (r) {
        var tr = el("tr", {"data-label": r.label});
        if (needle && r.name.toLowerCase().indexOf(needle) < 0 &&
            r.label.toLowerCase().indexOf(needle) < 0) tr.hidden = true; else count++;
        cols.forEach(function (c) {
          var v = r[c.key], td = el("td", c.text ? {"class": "text"} : {});
          if (c.text) td.textContent = v;
          else if (c.key === "num_gt" || c.key.indexOf("fp") === 0) td.textContent = v === null ? "" : String(v);
          else {
            td.textContent = fmt(v, c.gain);
            if (c.gain && v !== null) td.className = v > 0 ? "gain-pos" : v < 0 ? "gain-neg" : "";
          }
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      document.getElementById("ap-count").textContent = count + " of " + rows.length + " classes";
    }
    render();
  }

  /* ---- PR curves ------------------------------------------------------------------------- */
  function prCurves() {
    var d = data.pr, select = document.getElementById("pr-class");
    if (!d || !select) return;
    var labels = Object.keys(d.curves).sort(function (a, b) {
      return d.names[a].localeCompare(d.names[b]);
    });
    labels.forEach(function (l) { select.appendChild(el("option", {value: l}, d.names[l])); });
    var want = params().get("pr");
    if (want && d.curves[want]) select.value = want;
    select.addEventListener("change", function () { setParams({pr: select.value}); draw(); });
    var colours = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"];
    var dashes = ["", "6 3", "2 2", "8 3 2 3", "1 3"];
    function draw() {
      var box = document.getElementById("pr-plot"), W = 560, H = 380, L = 50, B = 40, T = 12, R = 160;
      box.textContent = "";
      var s = svg("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H});
      var x = function (r) { return L + r * (W - L - R); }, y = function (p) { return H - B - p * (H - B - T); };
      s.appendChild(svg("rect", {x: L, y: T, width: W - L - R, height: H - B - T, fill: "none", stroke: "#999"}));
      for (var t = 0; t <= 10; t += 2) {
        var lab = svg("text", {x: x(t / 10), y: H - B + 16, "text-anchor": "middle", "font-size": 11});
        lab.textContent = (t / 10).toFixed(1); s.appendChild(lab);
        var lab2 = svg("text", {x: L - 6, y: y(t / 10) + 4, "text-anchor": "end", "font-size": 11});
        lab2.textContent = (t / 10).toFixed(1); s.appendChild(lab2);
      }
      var xl = svg("text", {x: x(0.5), y: H - 6, "text-anchor": "middle", "font-size": 12}); xl.textContent = "recall";
      var yl = svg("text", {x: 12, y: y(0.5), "font-size": 12, transform: "rotate(-90 12 " + y(0.5) + ")",
                            "text-anchor": "middle"}); yl.textContent = "precision";
      s.appendChild(xl); s.appendChild(yl);
      var curves = d.curves[select.value] || [];
      d.runs.forEach(function (run, i) {
        var c = curves[i], ly = T + 16 + 18 * i;
        var key = svg("line", {x1: W - R + 10, x2: W - R + 40, y1: ly, y2: ly, stroke: colours[i % 5],
                               "stroke-width": 2.5, "stroke-dasharray": dashes[i % 5]});
        var kt = svg("text", {x: W - R + 46, y: ly + 4, "font-size": 11});
        kt.textContent = run + (c ? "" : " (no points)");
        s.appendChild(key); s.appendChild(kt);
        if (!c) return;
        var pts = c[0].map(function (r, k) { return x(r).toFixed(1) + "," + y(c[1][k]).toFixed(1); });
        s.appendChild(svg("polyline", {points: pts.join(" "), fill: "none", stroke: colours[i % 5],
                                       "stroke-width": 2, "stroke-dasharray": dashes[i % 5],
                                       "data-run": run}));
      });
      box.setAttribute("aria-label", "precision-recall curves of " + (d.names[select.value] || "no class"));
      box.appendChild(s);
    }
    draw();
  }

  /* ---- gallery --------------------------------------------------------------------------- */
  var PAGE = 12;
  function gallery() {
    var g = data.gallery;
    if (!g) return;
    var runSel = document.getElementById("g-run"), clsSel = document.getElementById("g-class");
    var errSel = document.getElementById("g-error"), score = document.getElementById("g-score");
    var status = document.getElementById("g-status"), grid = document.getElementById("g-grid");
    g.runs.forEach(function (r, i) { runSel.appendChild(el("option", {value: i}, r.name)); });
    errSel.appendChild(el("option", {value: "any"}, "any detection"));
    g.types.forEach(function (t) { errSel.appendChild(el("option", {value: t}, g.styles[t].code + " " + t)); });
    errSel.appendChild(el("option", {value: "fp"}, "any false positive"));
    errSel.appendChild(el("option", {value: "tp"}, "T true positive"));
    var p = params();
    runSel.value = p.get("grun") || String(g.runs.length - 1);  // default: the last run
    function fillClasses() {
      var run = g.runs[+runSel.value];
      clsSel.textContent = "";
      clsSel.appendChild(el("option", {value: ""}, "all classes"));
      run.classes.map(function (n, i) { return [n, i]; }).sort(function (a, b) { return a[0].localeCompare(b[0]); })
        .forEach(function (c) { clsSel.appendChild(el("option", {value: c[0]}, c[0])); });
    }
    fillClasses();
    clsSel.value = p.get("gclass") || "";
    errSel.value = p.get("gerror") || "any";
    if (p.get("gscore") !== null) score.value = p.get("gscore");
    var page = Math.max(1, parseInt(p.get("gpage") || "1", 10)) - 1;

    function matching() {  // image positions passing the filters, from the index only
      var run = g.runs[+runSel.value], cls = run.classes.indexOf(clsSel.value);
      var kind = errSel.value, thr = Math.round(parseFloat(score.value || "0") * 1000);
      var want = kind === "any" ? -1 : kind === "tp" ? 7 : kind === "fp" ? -2 : g.types.indexOf(kind);
      var out = [];
      run.index.forEach(function (idx, i) {
        var ok = false;
        for (var k = 0; k < idx.length && !ok; k += 3) {
          var c = idx[k], t = idx[k + 1], s = idx[k + 2];
          if (cls >= 0 && c !== cls) continue;
          if (want === -1) ok = t === 9 || s >= thr;
          else if (want === -2) ok = t < 7 && s >= thr;
          else ok = t === want && s >= thr;
        }
        if (ok) out.push(i);
      });
      return out;
    }
    function boxesSvg(items, isGt, run, thr) {
      var s = svg("svg", {viewBox: "0 0 1000 1000", preserveAspectRatio: "none", "aria-hidden": "true"});
      items.forEach(function (b) {
        var colour, dash = "", tag;
        if (isGt) { colour = "#ffffff"; dash = b[5] ? "12 8" : ""; tag = run.classes[b[4]] + (b[5] ? " (group)" : ""); }
        else {
          if (!thr(b)) return;
          var t = b[5];
          if (t < 7) { var st = g.styles[g.types[t]]; colour = st.colour; dash = st.dash.split(" ").map(function (v) { return v * 3; }).join(" "); tag = st.code; }
          else { colour = t === 7 ? g.tp_colour : "#bbbbbb"; tag = t === 7 ? "T" : "G"; }
          tag += " " + run.classes[b[4]] + " " + (b[6] / 1000).toFixed(2);
        }
        s.appendChild(svg("rect", {x: b[0], y: b[1], width: Math.max(1, b[2] - b[0]), height: Math.max(1, b[3] - b[1]),
                                   fill: "none", stroke: "#000", "stroke-width": 9, "vector-effect": "none"}));
        s.appendChild(svg("rect", {x: b[0], y: b[1], width: Math.max(1, b[2] - b[0]), height: Math.max(1, b[3] - b[1]),
                                   fill: "none", stroke: colour, "stroke-width": 5, "stroke-dasharray": dash}));
        var txt = svg("text", {x: b[0] + 6, y: Math.max(b[1] + 40, 40), "font-size": 38, fill: colour,
                               stroke: "#000", "stroke-width": 8, "paint-order": "stroke"});
        txt.textContent = tag;
        s.appendChild(txt);
      });
      return s;
    }
    function panel(src, alt, items, isGt, run, thr) {
      var div = el("div", {"class": "panel"});
      if (src) div.appendChild(el("img", {src: src, alt: alt, loading: "lazy", decoding: "async"}));
      else div.appendChild(el("span", {"class": "tag", role: "img", "aria-label": alt}, "image not linked"));
      div.appendChild(boxesSvg(items, isGt, run, thr));
      return div;
    }
    function render() {
      var run = g.runs[+runSel.value], list = matching(), pages = Math.max(1, Math.ceil(list.length / PAGE));
      page = Math.min(page, pages - 1);
      setParams({grun: runSel.value, gclass: clsSel.value,
                 gerror: errSel.value === "any" ? null : errSel.value, gscore: score.value,
                 gpage: page ? page + 1 : null});
      var sel = list.slice(page * PAGE, page * PAGE + PAGE), cut = Math.round(parseFloat(score.value || "0") * 1000);
      var cls = run.classes.indexOf(clsSel.value), kind = errSel.value;
      var want = kind === "any" ? -1 : kind === "tp" ? 7 : kind === "fp" ? -2 : g.types.indexOf(kind);
      // the detections drawn: those passing every filter (score, class, error type)
      var thr = function (b) {
        return b[6] >= cut && (cls < 0 || b[4] === cls) &&
          (want === -1 || (want === -2 ? b[5] < 7 : b[5] === want));
      };
      status.textContent = list.length + " images, page " + (page + 1) + " of " + pages;
      var needed = {};
      sel.forEach(function (i) { needed[run.chunks[Math.floor(i / run.chunk)]] = true; });
      var token = {};
      render.token = token;
      Promise.all(Object.keys(needed).map(load)).then(function () {
        if (render.token !== token) return;  // a newer render started
        grid.textContent = "";
        sel.forEach(function (i) {
          var item = data[run.chunks[Math.floor(i / run.chunk)]][i % run.chunk];
          var fig = el("figure", {"class": "card", "data-image": item[0]});
          var shownDets = item[3].filter(thr);
          var pair = el("div", {"class": "pair"});
          pair.appendChild(panel(item[1], "image " + item[0] + ": ground truth, " + item[2].length + " boxes", item[2], true, run, thr));
          pair.appendChild(panel(item[1], "image " + item[0] + ": " + shownDets.length + " detections with score at least " +
                                 (cut / 1000).toFixed(2) + (cls >= 0 ? " of class " + clsSel.value : "") +
                                 (want === -1 ? "" : ", " + errSel.options[errSel.selectedIndex].text),
                                 item[3], false, run, thr));
          fig.appendChild(pair);
          var kinds = {};
          shownDets.forEach(function (b) { var k = b[5] < 7 ? g.types[b[5]] : b[5] === 7 ? "TP" : "group-of"; kinds[k] = (kinds[k] || 0) + 1; });
          fig.appendChild(el("figcaption", {}, item[0] + " \u2014 " + (Object.keys(kinds).map(function (k) {
            return kinds[k] + " " + k; }).join(", ") || "no detection passes the filters")));
          grid.appendChild(fig);
        });
        grid.setAttribute("data-ready", "1");
      });
    }
    runSel.addEventListener("change", function () { fillClasses(); page = 0; render(); });
    [clsSel, errSel, score].forEach(function (c) { c.addEventListener("change", function () { page = 0; render(); }); });
    document.getElementById("g-prev").addEventListener("click", function () { if (page > 0) { page--; render(); } });
    document.getElementById("g-next").addEventListener("click", function () { page++; render(); });
    render();
  }

  function start() {
    apTable();
    prCurves();
    gallery();
    document.body.setAttribute("data-wd-ready", "1");
  }
  return {chunk: chunk, load: load, start: start, data: data};
})();

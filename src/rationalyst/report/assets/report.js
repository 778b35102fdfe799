/* The report page's script. Everything is built from the JSON in #report-data with textContent and
   createElement, never innerHTML, so any text from a trace or document shows as text. Lists are
   paginated (a page of problems or documents is all that is in the DOM), so runs of thousands of
   problems stay responsive. No network, no libraries. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var PAGE_SIZE = 50;
  var DOC_PAGE_SIZE = 20;
  var VIEWS = ["overview", "traces", "mining"];

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === undefined || value === null || value === false) return;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key === "data") Object.keys(value).forEach(function (k) { node.dataset[k] = value[k]; });
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  function byId(id) { return document.getElementById(id); }
  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function pct(x) { return isNum(x) ? (100 * x).toFixed(1) + "%" : "-"; }
  function ciText(ci) { return ci ? "[" + (100 * ci[0]).toFixed(1) + ", " + (100 * ci[1]).toFixed(1) + "]" : "-"; }
  function num(x, digits) {
    return isNum(x) ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "-";
  }
  function signed(x) { return isNum(x) ? (x >= 0 ? "+" : "") + x.toFixed(3) : "-"; }
  function statusCell(complete) {
    return complete ? el("td", { class: "text", text: "complete" }) : el("td", { class: "text incomplete", text: "incomplete" });
  }
  function table(header, rows, textColumns) {
    var left = textColumns === undefined ? 2 : textColumns;
    var head = el("tr", null, header.map(function (h, i) { return el("th", { class: i < left ? "text" : null, text: h }); }));
    return el("table", null, el("thead", null, head), el("tbody", null, rows));
  }
  function td(value, cls) { return el("td", { class: cls || null, text: value }); }
  function plot(src, alt) { return src ? el("img", { class: "plot", src: src, alt: alt }) : null; }

  // ------------------------------------------------------------------ tabs

  function showView(view) {
    if (VIEWS.indexOf(view) < 0 || byTab(view).hidden) view = "overview";
    VIEWS.forEach(function (v) { byId("view-" + v).hidden = v !== view; });
    Array.prototype.forEach.call(document.querySelectorAll("#tabs button"), function (b) {
      b.setAttribute("aria-selected", String(b.dataset.view === view));
    });
    state.view = view;
    if (view === "traces") Traces.renderAll();
    if (view === "mining") Mining.renderAll();
  }
  // Show a view now and remember it in the URL (the hashchange that follows finds it shown already).
  function go(view) {
    showView(view);
    if (location.hash !== "#" + state.view) location.hash = state.view;
  }
  function byTab(view) { return document.querySelector('#tabs button[data-view="' + view + '"]'); }

  var state = { view: "overview" };

  // ------------------------------------------------------------------ overview

  function renderOverview() {
    var root = byId("view-overview");
    var parts = [];
    var runs = DATA.runs;
    if (runs.length) {
      parts.push(el("h2", { text: "Accuracy" }),
        el("p", { class: "meta", text: "95% Wilson score intervals; n = problems in the run; a failed problem counts as wrong. Click a row to see its traces." }));
      parts.push(table(["benchmark", "method", "n", "correct", "accuracy", "95% CI", "unparsed", "errors", "status"],
        runs.map(function (r, i) {
          return el("tr", { class: "clickable", data: { run: i }, onclick: function () { Traces.open(i); } },
            td(r.benchmark, "text"), td(r.label, "text"), td(r.n), td(r.correct), td(pct(r.accuracy)), td(ciText(r.ci)),
            td(r.unparsed), td(r.errors), statusCell(r.complete));
        })));
      parts.push(plot(DATA.plots.accuracy, "accuracy per benchmark and method"));
      parts.push(el("h2", { text: "Cost per problem" }),
        el("p", { class: "meta", text: "Means per problem. Supervision share = (rationalist + scorer + judge seconds) / total seconds." }));
      var roles = ["agent", "rationalist", "scorer", "judge"];
      parts.push(table(["benchmark", "method"].concat(roles.map(function (r) { return r + " tokens"; }),
        ["tokens", "seconds", "supervision share", "status"]),
        runs.map(function (r) {
          return el("tr", null, td(r.benchmark, "text"), td(r.label, "text"),
            roles.map(function (role) { return td(num(r.tokens[role], 0)); }),
            td(num(r.tokens.total, 0)), td(num(r.seconds.total, 2)), td(pct(r.supervision_share)), statusCell(r.complete));
        })));
      parts.push(plot(DATA.plots.cost, "cost per problem"));
    }
    if (DATA.comparisons.length) {
      parts.push(el("h2", { text: "Where methods chose differently" }),
        el("p", { class: "meta", text: "Problems where, at a step offering both methods the same candidates, they chose differently, and who was right there." }));
      parts.push(table(["benchmark", "A", "B", "problems in both", "with identical candidates", "chose differently",
        "A right, B wrong", "A wrong, B right", "both right", "both wrong"],
        DATA.comparisons.map(function (c) {
          return el("tr", null, td(c.benchmark, "text"), td(c.a, "text"), td(c.b, "text"), td(c.both), td(c.comparable),
            td(c.differ), td(c.a_only_right), td(c.b_only_right), td(c.both_right), td(c.both_wrong));
        })));
    }
    DATA.mining.forEach(function (m) {
      parts.push(el("h2", null, "Mining: " + m.path, m.complete ? null : el("span", { class: "badge bad", text: "incomplete" })));
      parts.push(sourcesTable(m), plot(m.histogram, "histogram of deltas with tau marked"));
    });
    if (!parts.length) parts.push(el("p", { class: "empty", text: "No runs found." }));
    root.replaceChildren.apply(root, parts.filter(Boolean));
  }

  function sourcesTable(m) {
    return table(["source", "documents", "rationales", "kept", "dropped", "not scored", "kept share", "mean delta", "tau"],
      m.sources.map(function (s) {
        return el("tr", null, td(s.source, "text"), td(s.documents), td(s.rationales), td(s.kept), td(s.dropped),
          td(s.unscored), td(pct(s.kept_share)), td(isNum(s.mean_delta) ? s.mean_delta.toFixed(3) : "-"),
          td(s.taus.length ? s.taus.join(", ") : "-"));
      }));
  }

  // ------------------------------------------------------------------ traces

  function sameCandidates(a, b) {
    var ca = a.candidates || [], cb = b.candidates || [];
    if (!ca.length || ca.length !== cb.length) return false;
    for (var i = 0; i < ca.length; i++) if (ca[i].text !== cb[i].text) return false;
    return true;
  }
  function chosenOf(step) { return isNum(step.chosen) ? step.chosen : null; }

  var problemIndex = {};  // run index -> {id: problem}
  function problemsById(run) {
    if (!problemIndex[run]) {
      var map = new Map();
      DATA.runs[run].problems.forEach(function (p) { map.set(p.id, p); });
      problemIndex[run] = map;
    }
    return problemIndex[run];
  }

  // Steps of problem p (in run a) where run b was offered the same candidates; and where it chose differently.
  function stepRelation(p, q) {
    var same = [], differ = [];
    if (!q) return { same: same, differ: differ };
    var steps = p.steps || [], other = q.steps || [];
    for (var i = 0; i < Math.min(steps.length, other.length); i++) {
      if (sameCandidates(steps[i], other[i])) {
        same.push(i);
        if (chosenOf(steps[i]) !== chosenOf(other[i])) differ.push(i);
      }
    }
    return { same: same, differ: differ };
  }

  var differCache = {};
  function differSet(a, b) {
    var key = a + ":" + b;
    if (!differCache[key]) {
      var others = problemsById(b), set = new Set();
      DATA.runs[a].problems.forEach(function (p) {
        if (stepRelation(p, others.get(p.id)).differ.length) set.add(p.id);
      });
      differCache[key] = set;
    }
    return differCache[key];
  }

  var Traces = (function () {
    var s = { benchmark: null, run: null, compare: null, outcome: "all", differ: false, query: "", page: 0, selected: null };
    var filtered = [], position = new Map(), searchText = {};
    var ready = false;

    function benchmarks() {
      var seen = [];
      DATA.runs.forEach(function (r) { if (seen.indexOf(r.benchmark) < 0) seen.push(r.benchmark); });
      return seen;
    }
    function runsOf(benchmark) {
      return DATA.runs.map(function (r, i) { return i; }).filter(function (i) { return DATA.runs[i].benchmark === benchmark; });
    }
    function pick(candidates, preferred) {
      for (var k = 0; k < preferred.length; k++) {
        for (var j = 0; j < candidates.length; j++) if (DATA.runs[candidates[j]].method === preferred[k]) return candidates[j];
      }
      return candidates.length ? candidates[0] : null;
    }
    function options(select, items, value) {
      select.replaceChildren.apply(select, items.map(function (item) {
        return el("option", { value: item.value, text: item.label });
      }));
      select.value = value === null ? "" : String(value);
    }

    function setBenchmark(benchmark, keepMethod) {
      s.benchmark = benchmark;
      var runs = runsOf(benchmark);
      var method = keepMethod && s.run !== null ? DATA.runs[s.run].method : null;
      s.run = pick(runs, method ? [method, "implicit"] : ["implicit"]);
      chooseCompare();
    }
    function chooseCompare() {
      var others = runsOf(s.benchmark).filter(function (i) { return i !== s.run; });
      var keep = s.compare !== null && others.indexOf(s.compare) >= 0 ? [DATA.runs[s.compare].method] : [];
      s.compare = others.length ? pick(others, keep.concat(["random", "implicit"])) : null;
    }

    function init() {
      if (ready) return;
      ready = true;
      var first = benchmarks()[0];
      if (first === undefined) return;
      setBenchmark(first, false);
      byId("benchmark-select").addEventListener("change", function (e) { setBenchmark(e.target.value, true); s.selected = null; refresh(); });
      byId("method-select").addEventListener("change", function (e) {
        s.run = Number(e.target.value); chooseCompare(); refresh();
      });
      byId("compare-select").addEventListener("change", function (e) { s.compare = e.target.value === "" ? null : Number(e.target.value); refresh(); });
      byId("differ-toggle").addEventListener("change", function (e) { s.differ = e.target.checked; refresh(); });
      byId("search").addEventListener("input", function (e) { s.query = e.target.value.trim().toLowerCase(); refresh(); });
      Array.prototype.forEach.call(document.querySelectorAll("[data-outcome]"), function (b) {
        b.addEventListener("click", function () { s.outcome = b.dataset.outcome; refresh(); });
      });
      byId("page-prev").addEventListener("click", function () { turnPage(-1); });
      byId("page-next").addEventListener("click", function () { turnPage(1); });
      document.addEventListener("keydown", onKey);
    }

    function matches(p) {
      if (s.outcome === "correct" && !p.correct) return false;
      if (s.outcome === "wrong" && p.correct) return false;
      if (s.query) {
        var key = s.run + "\u0000" + p.id;
        if (searchText[key] === undefined) searchText[key] = (p.id + " " + (p.question || "")).toLowerCase();
        if (searchText[key].indexOf(s.query) < 0) return false;
      }
      return true;
    }

    function refilter() {
      var problems = DATA.runs[s.run].problems;
      var set = s.differ && s.compare !== null ? differSet(s.run, s.compare) : null;
      filtered = problems.filter(function (p) { return (!set || set.has(p.id)) && matches(p); });
      position = new Map();
      filtered.forEach(function (p, i) { position.set(p.id, i); });
      if (s.selected === null || !position.has(s.selected)) s.selected = filtered.length ? filtered[0].id : null;
      s.page = s.selected === null ? 0 : Math.floor(position.get(s.selected) / PAGE_SIZE);
    }

    function refresh() { refilter(); renderControls(); renderList(); renderDetail(); }
    function renderAll() { init(); if (s.run === null) return; refresh(); }

    function renderControls() {
      options(byId("benchmark-select"), benchmarks().map(function (b) { return { value: b, label: b }; }), s.benchmark);
      options(byId("method-select"), runsOf(s.benchmark).map(function (i) {
        var r = DATA.runs[i];
        return { value: i, label: r.label + (r.complete ? "" : " (incomplete)") };
      }), s.run);
      var others = runsOf(s.benchmark).filter(function (i) { return i !== s.run; });
      options(byId("compare-select"), others.map(function (i) { return { value: i, label: DATA.runs[i].label }; }), s.compare === null ? "" : s.compare);
      byId("compare-select").disabled = !others.length;
      byId("differ-toggle").disabled = !others.length;
      byId("differ-toggle").checked = s.differ && !!others.length;
      Array.prototype.forEach.call(document.querySelectorAll("[data-outcome]"), function (b) {
        b.classList.toggle("active", b.dataset.outcome === s.outcome);
        b.setAttribute("aria-pressed", String(b.dataset.outcome === s.outcome));
      });
    }

    function pages() { return Math.max(1, Math.ceil(filtered.length / PAGE_SIZE)); }

    function renderList() {
      var run = DATA.runs[s.run];
      var wrong = filtered.filter(function (p) { return !p.correct; }).length;
      byId("problem-count").textContent = filtered.length + " of " + run.problems.length + " problems shown (" +
        (filtered.length - wrong) + " correct, " + wrong + " wrong)" + (run.complete ? "" : "; run incomplete");
      var start = s.page * PAGE_SIZE;
      var items = filtered.slice(start, start + PAGE_SIZE).map(function (p) {
        var question = (p.question || "").replace(/\s+/g, " ").slice(0, 120);
        return el("li", {
          class: (p.correct ? "correct" : "wrong") + (p.id === s.selected ? " selected" : ""),
          data: { id: p.id }, title: p.id,
          onclick: function () { select(p.id); },
        }, el("span", { class: "mark", text: p.correct ? "\u2713" : "\u2717" }), el("span", { class: "pid", text: p.id }), question);
      });
      var list = byId("problem-list");
      list.replaceChildren.apply(list, items);
      if (!items.length) list.appendChild(el("li", { class: "empty", text: "No problem matches these filters." }));
      byId("page-info").textContent = "page " + (s.page + 1) + " / " + pages();
      byId("page-prev").disabled = s.page === 0;
      byId("page-next").disabled = s.page >= pages() - 1;
      var chosen = list.querySelector("li.selected");
      if (chosen && chosen.scrollIntoView) chosen.scrollIntoView({ block: "nearest" });
    }

    function select(id) {
      if (!position.has(id)) return;
      var page = Math.floor(position.get(id) / PAGE_SIZE);
      s.selected = id;
      if (page !== s.page) { s.page = page; renderList(); }
      else {
        Array.prototype.forEach.call(byId("problem-list").children, function (li) {
          li.classList.toggle("selected", li.dataset.id === id);
          if (li.dataset.id === id && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
        });
      }
      renderDetail();
    }

    function move(delta) {
      if (!filtered.length) return;
      var i = s.selected === null ? 0 : position.get(s.selected) + delta;
      select(filtered[Math.max(0, Math.min(filtered.length - 1, i))].id);
    }

    function turnPage(delta) {
      var page = Math.max(0, Math.min(pages() - 1, s.page + delta));
      if (page === s.page || !filtered.length) return;
      select(filtered[page * PAGE_SIZE].id);
    }

    function onKey(e) {
      if (state.view !== "traces" || e.altKey || e.ctrlKey || e.metaKey) return;
      var target = e.target;
      var tag = target && target.tagName;
      if (tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && target.type !== "checkbox")) return;
      var steps = { ArrowDown: 1, ArrowRight: 1, j: 1, ArrowUp: -1, ArrowLeft: -1, k: -1 };
      if (steps[e.key] !== undefined) { move(steps[e.key]); e.preventDefault(); }
      else if (e.key === "PageDown") { turnPage(1); e.preventDefault(); }
      else if (e.key === "PageUp") { turnPage(-1); e.preventDefault(); }
    }

    function open(run) {
      init();
      s.benchmark = DATA.runs[run].benchmark;
      s.run = run;
      chooseCompare();
      s.selected = null;
      go("traces");
    }

    function candidateList(step, otherStep, compareLabel) {
      var scores = (step.candidates || []).map(function (c) { return c.score; }).filter(isNum);
      var lo = Math.min.apply(null, scores), hi = Math.max.apply(null, scores);
      var chosen = chosenOf(step), otherChosen = otherStep ? chosenOf(otherStep) : null;
      return el("ol", { class: "candidates" }, (step.candidates || []).map(function (c, j) {
        var width = !isNum(c.score) ? 0 : hi > lo ? 8 + 92 * (c.score - lo) / (hi - lo) : 100;
        var fill = el("span", { class: "fill" });
        fill.style.width = width + "%";
        var badges = [];
        if (j === chosen) badges.push(el("span", { class: "badge good", text: "chosen" }));
        if (otherStep && j === otherChosen) badges.push(el("span", { class: "badge other", text: compareLabel + " chose this" }));
        // Written only where true: the agent's completion ran into its token limit (a cut step never ends the search).
        if (c.cut === true) badges.push(el("span", { class: "badge cut", text: "cut at the token limit" }));
        var otherScore = otherStep && otherStep.candidates[j] && isNum(otherStep.candidates[j].score)
          ? el("div", { class: "meta", text: compareLabel + ": " + otherStep.candidates[j].score.toFixed(3) }) : null;
        return el("li", { class: "candidate" + (j === chosen ? " chosen" : ""), data: { index: j } },
          el("div", { class: "bar", title: isNum(c.score) ? "score " + c.score : "no score" }, fill),
          el("div", { class: "score" }, isNum(c.score) ? c.score.toFixed(3) : "-", otherScore),
          el("div", { class: "ctext" }, el("span", { text: c.text }), badges,
            isNum(c.tokens) ? el("span", { class: "meta", text: "  " + c.tokens + " tokens" }) : null));
      }));
    }

    function costTable(p) {
      var roles = ["agent", "rationalist", "scorer", "judge"];
      var tokens = p.tokens || {}, seconds = p.seconds || {};
      return table(["", "agent", "rationalist", "scorer", "judge", "total"], [
        el("tr", null, td("tokens", "text"), roles.map(function (r) { return td(num(tokens[r], 0)); }),
          td(num(roles.reduce(function (a, r) { return a + (tokens[r] || 0); }, 0), 0))),
        el("tr", null, td("seconds", "text"), roles.map(function (r) { return td(num(seconds[r], 2)); }),
          td(num(isNum(seconds.total) ? seconds.total : roles.reduce(function (a, r) { return a + (seconds[r] || 0); }, 0), 2))),
      ], 1);
    }

    function renderDetail() {
      var root = byId("problem-detail");
      var run = DATA.runs[s.run];
      var p = s.selected === null ? null : filtered[position.get(s.selected)];
      if (!p) { root.replaceChildren(el("p", { class: "empty", text: "No problem selected." })); return; }
      var other = s.compare !== null ? problemsById(s.compare).get(p.id) : null;
      var compareLabel = s.compare !== null ? DATA.runs[s.compare].label : "";
      var relation = stepRelation(p, other);
      var parts = [];
      parts.push(el("h2", null, el("span", { class: "problem-id", text: p.id }),
        el("span", { class: "badge " + (p.correct ? "good" : "bad"), text: p.correct ? "correct" : "wrong" })));
      parts.push(el("p", { class: "meta", text: [run.benchmark, run.label, "stop: " + (p.stop_reason || "-"),
        (p.steps || []).length + " steps", "seconds: " + num(p.seconds && p.seconds.total, 2)].join(" \u00b7 ") }));
      if (other) {
        parts.push(el("p", { class: "meta" }, compareLabel + " on this problem: ",
          el("span", { class: "badge " + (other.correct ? "good" : "bad"), text: other.correct ? "correct" : "wrong" }),
          " prediction " + (other.prediction === undefined ? "none" : other.prediction) + "; " +
          relation.same.length + " step(s) with the same candidates, chose differently at " +
          (relation.differ.length ? "step " + relation.differ.map(function (i) { return i + 1; }).join(", ") : "none")));
      }
      if (p.error) parts.push(el("div", { class: "block badge bad", text: "error: " + p.error }));
      parts.push(el("h3", { text: "Question" }), el("div", { class: "block question", text: p.question || "" }));
      if (p.choices && p.choices.length) {
        parts.push(el("ol", { class: "choices", type: "A" }, p.choices.map(function (c) { return el("li", { text: c }); })));
      }
      parts.push(el("h3", { text: "Steps (" + (p.steps || []).length + ")" }));
      (p.steps || []).forEach(function (step, i) {
        var identical = relation.same.indexOf(i) >= 0, differs = relation.differ.indexOf(i) >= 0;
        var otherStep = identical ? other.steps[i] : null;
        parts.push(el("div", { class: "step" + (differs ? " differs" : ""), data: { step: i } },
          el("div", { class: "step-title" }, "Step " + (i + 1),
            differs ? el("span", { class: "badge other", text: "chose differently from " + compareLabel })
              : identical ? el("span", { class: "badge neutral", text: "same choice as " + compareLabel }) : null),
          step.rationale !== undefined && step.rationale !== null
            ? el("div", { class: "rationale" }, el("strong", { text: "Rationale: " }), el("span", { class: "rationale-text", text: step.rationale }))
            : null,
          candidateList(step, otherStep, compareLabel)));
      });
      parts.push(el("h3", { text: "Answer" }));
      parts.push(el("dl", { class: "answer" },
        el("dt", { text: "prediction" }), el("dd", { class: "prediction", text: p.prediction === undefined ? "(none parsed)" : p.prediction }),
        el("dt", { text: "gold" }), el("dd", { class: "gold", text: p.gold === undefined ? "-" : p.gold }),
        el("dt", { text: "verdict" }), el("dd", null, el("span", { class: "badge " + (p.correct ? "good" : "bad"), text: p.correct ? "correct" : "wrong" }))));
      if (p.solution) {
        parts.push(el("details", null, el("summary", { text: "Full solution" }), el("div", { class: "block solution", text: p.solution })));
      }
      parts.push(costTable(p));
      root.replaceChildren.apply(root, parts);
    }

    return { renderAll: renderAll, open: open, state: s, visible: function () { return filtered; } };
  })();

  // ------------------------------------------------------------------ mining

  var Mining = (function () {
    var s = { run: 0, source: "", docs: "all", page: 0 };
    var filtered = [];
    var ready = false;

    function init() {
      if (ready) return;
      ready = true;
      byId("mining-select").addEventListener("change", function (e) { s.run = Number(e.target.value); s.source = ""; s.page = 0; refresh(); });
      byId("source-select").addEventListener("change", function (e) { s.source = e.target.value; s.page = 0; refresh(); });
      Array.prototype.forEach.call(document.querySelectorAll("[data-docs]"), function (b) {
        b.addEventListener("click", function () { s.docs = b.dataset.docs; s.page = 0; refresh(); });
      });
      byId("doc-prev").addEventListener("click", function () { if (s.page > 0) { s.page--; renderDocuments(); } });
      byId("doc-next").addEventListener("click", function () { if (s.page < pages() - 1) { s.page++; renderDocuments(); } });
    }
    function pages() { return Math.max(1, Math.ceil(filtered.length / DOC_PAGE_SIZE)); }
    function verdicts(doc) {
      var out = { kept: 0, dropped: 0, unscored: 0 };
      doc.segments.forEach(function (seg) {
        if (seg.rationale === undefined) return;
        if (seg.kept === true) out.kept++; else if (seg.kept === false) out.dropped++; else out.unscored++;
      });
      return out;
    }
    function refresh() {
      var m = DATA.mining[s.run];
      filtered = m.documents.filter(function (d) {
        if (s.source && d.source !== s.source) return false;
        var v = verdicts(d);
        return s.docs === "all" || (s.docs === "kept" ? v.kept > 0 : v.dropped > 0);
      });
      var runSelect = byId("mining-select");
      runSelect.replaceChildren.apply(runSelect, DATA.mining.map(function (r, i) {
        return el("option", { value: i, text: r.path + (r.complete ? "" : " (incomplete)") });
      }));
      runSelect.value = String(s.run);
      var sourceSelect = byId("source-select");
      sourceSelect.replaceChildren.apply(sourceSelect, [el("option", { value: "", text: "all sources" })].concat(
        m.sources.map(function (src) { return el("option", { value: src.source, text: src.source }); })));
      sourceSelect.value = s.source;
      Array.prototype.forEach.call(document.querySelectorAll("[data-docs]"), function (b) {
        b.classList.toggle("active", b.dataset.docs === s.docs);
        b.setAttribute("aria-pressed", String(b.dataset.docs === s.docs));
      });
      var summary = byId("mining-summary");
      summary.replaceChildren(
        el("p", { class: "meta", text: m.scored + " rationales scored in " + m.documents_total + " documents" +
          (isNum(m.gamma) ? ", gamma " + m.gamma : "") + (m.extract ? "; not yet scored rationales from " + m.extract : "") +
          (m.complete ? "" : "; run incomplete") }),
        sourcesTable(m), plot(m.histogram, "histogram of deltas with tau marked") || el("span"));
      renderDocuments();
    }
    function renderDocuments() {
      var m = DATA.mining[s.run];
      var start = s.page * DOC_PAGE_SIZE;
      byId("document-count").textContent = filtered.length + " documents shown" +
        (m.documents.length < m.documents_total ? " (the report holds the first " + m.documents.length + " of " + m.documents_total + ")" : "");
      var docs = filtered.slice(start, start + DOC_PAGE_SIZE).map(function (d) {
        var v = verdicts(d);
        var text = el("div", { class: "doc-text" }, d.segments.map(function (seg) {
          if (seg.rationale === undefined) return seg.text;
          var kind = seg.kept === true ? "kept" : seg.kept === false ? "dropped" : "unscored";
          var verdict = kind === "unscored" ? "not scored" : kind + " \u0394 " + signed(seg.delta) + (isNum(seg.tau) ? " (\u03c4 " + seg.tau + ")" : "");
          return el("mark", { class: "rationale " + kind, data: { id: seg.id || "" }, title: verdict },
            el("span", { class: "rationale-text", text: seg.rationale }), el("span", { class: "verdict", text: verdict }));
        }));
        return el("div", { class: "document", data: { id: d.id } },
          el("h3", null, el("span", { text: d.id }), el("span", { class: "badge neutral", text: d.source }),
            el("span", { class: "badge good", text: v.kept + " kept" }), el("span", { class: "badge bad", text: v.dropped + " dropped" }),
            v.unscored ? el("span", { class: "badge neutral", text: v.unscored + " not scored" }) : null),
          text);
      });
      var list = byId("document-list");
      list.replaceChildren.apply(list, docs.length ? docs : [el("p", { class: "empty", text: "No document matches." })]);
      byId("doc-page-info").textContent = "page " + (s.page + 1) + " / " + pages();
      byId("doc-prev").disabled = s.page === 0;
      byId("doc-next").disabled = s.page >= pages() - 1;
    }
    function renderAll() { init(); if (DATA.mining.length) refresh(); }
    return { renderAll: renderAll };
  })();

  // ------------------------------------------------------------------ start

  document.title = DATA.title;
  byId("title").textContent = DATA.title;
  var incomplete = DATA.runs.filter(function (r) { return !r.complete; }).length +
    DATA.mining.filter(function (m) { return !m.complete; }).length;
  byId("subtitle").textContent = DATA.root + " \u00b7 generated " + DATA.generated + " \u00b7 " + DATA.runs.length +
    " eval run(s), " + DATA.mining.length + " filter run(s)" + (incomplete ? " \u00b7 " + incomplete + " incomplete" : "");
  byTab("traces").hidden = !DATA.runs.length;
  byTab("mining").hidden = !DATA.mining.length;
  Array.prototype.forEach.call(document.querySelectorAll("#tabs button"), function (b) {
    b.addEventListener("click", function () { go(b.dataset.view); });
  });
  window.addEventListener("hashchange", function () {
    if (location.hash.slice(1) !== state.view) showView(location.hash.slice(1));
  });
  renderOverview();
  showView(location.hash.slice(1));
  window.rationalystReport = { traces: Traces };
})();

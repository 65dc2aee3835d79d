// gosup's status page: polls status.json and redraws the daemon's figures
// and the processes in place, as the server rendered them (the server
// formats every figure: this only places text). It pauses while the tab
// is hidden and says so when the daemon stops answering.
(function () {
  "use strict";
  var every = Number(document.body.getAttribute("data-every")) || 2000;
  var live = document.getElementById("live");
  var table = document.getElementById("procs");
  var wait = Math.max(every * 4, 10000); // for an answer, before saying there is none
  var timer = 0, inflight = false, updates = 0;
  var cols = [["name", "Name"], ["state", "State"], ["pid", "PID"], ["port", "Port"], ["uptime", "Uptime"],
    ["restarts", "Restarts"], ["cpu", "CPU"], ["mem", "Mem"], ["info", "Info"]];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(id, text) {
    var e = document.getElementById(id);
    if (e && e.textContent !== text) e.textContent = text;
  }
  function cell(p, key) {
    var s = p.show;
    switch (key) {
      case "name": return p.name;
      case "state": return p.state;
      case "mem": return s.tree_mem ? s.mem + " (tree " + s.tree_mem + ")" : s.mem;
      default: return s[key];
    }
  }
  function row(p) {
    var tr = el("tr", "proc state-" + String(p.state).toLowerCase());
    tr.setAttribute("data-name", p.name);
    cols.forEach(function (c) {
      var td = el("td", c[0], cell(p, c[0]));
      td.setAttribute("data-label", c[1]);
      tr.appendChild(td);
    });
    return tr;
  }
  function render(st) {
    var d = st.daemon;
    setText("host", d.host);
    setText("version", (d.version || "unknown") + (d.revision ? " (" + d.revision + ")" : ""));
    setText("dstate", d.state + ", pid " + d.pid);
    setText("duptime", st.uptime);
    setText("asof", st.as_of); // the daemon's zone, as the times in INFO
    setText("summary", st.summary);
    var ul = document.getElementById("warnings");
    var lis = ul.getElementsByTagName("li");
    var same = lis.length === st.warnings.length && st.warnings.every(function (w, i) { return lis[i].textContent === w; });
    if (!same) {
      while (ul.firstChild) ul.removeChild(ul.firstChild);
      st.warnings.forEach(function (w) { ul.appendChild(el("li", "", w)); });
    }
    if (!update(st.processes)) rebuild(st.processes);
    updates++;
    document.body.setAttribute("data-updates", String(updates));
  }
  // update changes in place what changed in the rows when the page lists
  // the same processes in the same programs (every refresh but one after
  // a reload added, removed or moved some): an operator's selection and
  // the rows' elements stay. It says false, having changed nothing, when
  // they differ.
  function update(procs) {
    var trs = table.querySelectorAll("tr.proc");
    if (trs.length !== procs.length) return false;
    var byName = Object.create(null), i;
    for (i = 0; i < trs.length; i++) byName[trs[i].getAttribute("data-name")] = trs[i];
    var mine = [];
    for (i = 0; i < procs.length; i++) {
      var tr = byName[procs[i].name];
      if (!tr || tr.parentNode.getAttribute("data-program") !== procs[i].program) return false;
      mine.push(tr);
    }
    procs.forEach(function (p, i) {
      var tr = mine[i], cls = "proc state-" + String(p.state).toLowerCase();
      if (tr.className !== cls) tr.className = cls;
      cols.forEach(function (c, j) {
        var text = cell(p, c[0]);
        if (tr.cells[j].textContent !== text) tr.cells[j].textContent = text;
      });
    });
    Array.prototype.forEach.call(table.tBodies, function (tb) {
      var span = tb.querySelector(".count");
      var text = tb.querySelectorAll("tr.state-running").length + "/" + tb.querySelectorAll("tr.proc").length + " running";
      if (span && span.textContent !== text) span.textContent = text;
    });
    return true;
  }
  // rebuild draws the rows anew.
  function rebuild(procs) {
    var bodies = [], byProgram = {};
    procs.forEach(function (p) {
      var b = byProgram[p.program];
      if (!b) {
        b = byProgram[p.program] = { tbody: el("tbody", "program"), running: 0, n: 0, count: el("span", "count") };
        b.tbody.setAttribute("data-program", p.program);
        var th = el("th", "", p.program + " ");
        th.colSpan = 9;
        th.appendChild(b.count);
        var head = el("tr", "head");
        head.appendChild(th);
        b.tbody.appendChild(head);
        bodies.push(b);
      }
      b.tbody.appendChild(row(p));
      b.n++;
      if (p.state === "RUNNING") b.running++;
    });
    Array.prototype.slice.call(table.tBodies).forEach(function (t) { t.remove(); });
    bodies.forEach(function (b) {
      b.count.textContent = b.running + "/" + b.n + " running";
      table.appendChild(b.tbody);
    });
  }
  function status(text, stale) {
    live.textContent = text;
    live.className = stale ? "live stale" : "live";
  }
  function schedule() {
    clearTimeout(timer);
    timer = 0;
    if (!document.hidden) timer = setTimeout(poll, every);
  }
  function poll() {
    if (inflight) return;
    if (document.hidden) {
      status("paused while the tab is hidden", false);
      return;
    }
    inflight = true;
    var ctl = new AbortController();
    var cut = setTimeout(function () { ctl.abort(); }, wait);
    fetch("status.json", { cache: "no-store", credentials: "same-origin", signal: ctl.signal })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (st) {
        render(st);
        status("live: refreshed every " + every / 1000 + " s", false);
      })
      .catch(function (err) {
        var why = err && err.name === "AbortError" ? "no answer in " + wait / 1000 + " s" :
          err && err.message ? err.message : String(err);
        status("not refreshed since " + document.getElementById("asof").textContent + ": " + why + " (retrying)", true);
      })
      .then(function () {
        clearTimeout(cut);
        inflight = false;
        if (document.hidden) status("paused while the tab is hidden", false); // hidden meanwhile
        schedule();
      });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
      timer = 0;
      status("paused while the tab is hidden", false);
    } else {
      poll();
    }
  });
  // A page opened in a background tab waits to be shown.
  if (document.hidden) status("paused while the tab is hidden", false);
  else status("live: refreshed every " + every / 1000 + " s", false);
  schedule();
})();

// gosup's status page: polls status.json and redraws the daemon's figures
// and the processes in place, as the server rendered them (the server
// formats every figure: this only places text). It pauses while the tab
// is hidden and says so when the daemon stops answering.
(function () {
  "use strict";
  var every = Number(document.body.getAttribute("data-every")) || 2000;
  var live = document.getElementById("live");
  var table = document.getElementById("procs");
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
    ul.replaceChildren.apply(ul, st.warnings.map(function (w) { return el("li", "", w); }));
    var bodies = [], byProgram = {};
    st.processes.forEach(function (p) {
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
    updates++;
    document.body.setAttribute("data-updates", String(updates));
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
    var cut = setTimeout(function () { ctl.abort(); }, Math.max(every * 4, 10000));
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
        status("not refreshed since " + document.getElementById("asof").textContent +
          ": " + (err && err.message ? err.message : err) + " (retrying)", true);
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
  status("live: refreshed every " + every / 1000 + " s", false);
  schedule();
})();

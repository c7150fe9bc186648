/* trigger_celery dashboard: live updates by polling small JSON endpoints, and a few
 * conveniences. No build step, no inline script (the pages' CSP forbids it); data from
 * the server arrives through json_script blocks and is only ever set as text. */
(function () {
  "use strict";
  var POLL_MS = 2000;

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function statusBadge(status) {
    return el("span", status, "status " + status);
  }

  /* A line at the top of the page while it is not live: what it shows may be old. */
  function liveState(text) {
    var note = document.getElementById("tc-live-state");
    if (!text) { if (note) note.remove(); return; }
    if (!note) {
      note = el("p", null, "problem");
      note.id = "tc-live-state";
      note.setAttribute("role", "status");
      var main = document.querySelector("main");
      main.insertBefore(note, main.firstChild);
    }
    note.textContent = text;
  }

  /* url: a string, or a function giving the next request's (it may carry a cursor).
   * A redirect (the session ended: the login page) or a 403 stops the polling and says
   * so; a server that does not answer is said to be so until it answers again. */
  function poll(url, handle) {
    var stopped = false;
    function tick() {
      if (stopped) return;
      fetch(typeof url === "function" ? url() : url, {
        credentials: "same-origin", redirect: "manual", headers: { Accept: "application/json" }
      })
        .then(function (r) {
          if (r.type === "opaqueredirect" || r.status === 401 || r.status === 403) {
            stopped = true;
            liveState("Live updates stopped: you are no longer logged in, or may no longer " +
              "see this page. What it shows may be out of date; reload it.");
            return null;
          }
          if (r.status >= 500) throw new Error("status " + r.status);
          liveState("");
          return r.ok ? r.json() : null;
        })
        .then(function (body) { if (body && handle(body) === false) stopped = true; })
        .catch(function () {
          liveState("Live updates paused: the server does not answer. Trying again…");
        })
        .then(function () { if (!stopped) setTimeout(tick, POLL_MS); });
    }
    setTimeout(tick, POLL_MS);
  }

  /* Runs list: redraw the first page's rows, keeping what is selected. A row that
   * arrives is never selected, and "select all" is unticked when one does: a bulk
   * action must not reach a run the user has not seen. */
  function liveList(live) {
    var table = document.getElementById("tc-runs");
    if (!table || !table.dataset.live) return;
    poll(live.url, function (body) {
      var tbody = table.tBodies[0];
      var checked = {}, shown = {};
      tbody.querySelectorAll("input[name=run]:checked").forEach(function (b) { checked[b.value] = true; });
      tbody.querySelectorAll("tr[data-id]").forEach(function (tr) { shown[tr.dataset.id] = true; });
      var all = document.getElementById("tc-select-all");
      if (all && body.runs.some(function (run) { return !shown[run.id]; })) all.checked = false;
      var rows = document.createDocumentFragment();
      body.runs.forEach(function (run) {
        var tr = el("tr");
        tr.dataset.id = run.id;
        if (live.select) {
          var td = el("td"), box = el("input");
          box.type = "checkbox"; box.name = "run"; box.value = run.id;
          box.setAttribute("form", "tc-bulk");
          box.checked = !!checked[run.id];
          td.appendChild(box); tr.appendChild(td);
        }
        var idCell = el("td", null, "mono"), link = el("a", run.id);
        link.href = live.detail.replace("RUN_ID", encodeURIComponent(run.id));
        idCell.appendChild(link); tr.appendChild(idCell);
        tr.appendChild(el("td", run.task));
        var st = el("td"); st.appendChild(statusBadge(run.status)); tr.appendChild(st);
        tr.appendChild(el("td", run.duration, "num"));
        tr.appendChild(el("td", run.attempts, "num"));
        var tags = el("td");
        run.tags.forEach(function (t) { tags.appendChild(el("span", t, "tag")); });
        tr.appendChild(tags);
        tr.appendChild(el("td", run.queue));
        tr.appendChild(el("td", run.created));
        tr.appendChild(el("td", run.finished || "—"));
        rows.appendChild(tr);
      });
      if (!body.runs.length) {  // the last matching run has moved on: say so
        var none = el("tr", null, "empty"), cell = el("td", "No runs match.");
        cell.colSpan = 10;
        none.appendChild(cell); rows.appendChild(none);
      }
      tbody.replaceChildren(rows);
      var kept = {};
      body.runs.forEach(function (run) { kept[run.id] = true; });
      var gone = Object.keys(checked).filter(function (id) { return !kept[id]; }).length;
      if (gone) {  // pushed off the page (or out of the filter): said, never acted on unseen
        selectionNote(gone + (gone === 1 ? " selected run" : " selected runs") +
          " left this page (newer runs came in, or it no longer matches) and " +
          (gone === 1 ? "is" : "are") + " no longer selected.");
      }
      pager(live, body.next);
    });
  }

  function selectionNote(text) {
    var note = document.getElementById("tc-selection-note");
    if (!note) {
      note = el("p", null, "problem");
      note.id = "tc-selection-note";
      note.setAttribute("role", "status");
      var table = document.getElementById("tc-runs");
      table.parentNode.insertBefore(note, table);
    }
    note.textContent = text;
  }

  /* The live first page's "Older runs" link starts after the last row it now shows:
   * runs pushed off it by new ones are the next page's first, never skipped. */
  function pager(live, next) {
    var holder = document.getElementById("tc-pager");
    if (!holder) return;
    var link = document.getElementById("tc-next");
    if (!next) { if (link) link.remove(); return; }
    if (!link) {
      link = el("a", "Older runs →");
      link.id = "tc-next";
      holder.appendChild(link);
    }
    link.href = live.next + encodeURIComponent(next);
  }

  /* Run detail: log lines written after the last one shown, added as text. */
  function addLogLines(live, lines) {
    var tbody = document.querySelector("#tc-logs tbody");
    if (!tbody) return;
    lines.forEach(function (line) {
      live.logs_after = Math.max(live.logs_after, line.id);
      if (live.logs_room <= 0) return;
      live.logs_room -= 1;
      var empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      var tr = el("tr"), attrs = el("td");
      tr.appendChild(el("td", line.time, "mono"));
      tr.appendChild(el("td", "#" + line.attempt));
      tr.appendChild(el("td", line.level, "level-" + String(line.level).toLowerCase()));
      tr.appendChild(el("td", line.message));
      attrs.appendChild(el("code", line.attributes));
      tr.appendChild(attrs);
      tbody.appendChild(tr);
    });
  }

  /* Run detail: status, attempts, tags, metadata and new log lines while it executes. */
  function liveRun(live) {
    if (live.final) return;
    function next() {
      // Once the page holds as many lines as it shows, it stops asking for more.
      return live.logs_room > 0 ? live.url + "?logs_after=" + live.logs_after : live.url;
    }
    poll(next, function (body) {
      if (body.logs) addLogLines(live, body.logs);
      var status = document.getElementById("tc-status");
      status.textContent = body.status;
      status.className = "status " + body.status;
      var sentTo = document.getElementById("tc-sent-to");
      if (sentTo && body.status !== "DEQUEUED") sentTo.remove();  // a worker took it
      document.getElementById("tc-attempts").textContent = body.attempts;
      document.getElementById("tc-duration").textContent = body.duration;
      document.getElementById("tc-metadata").textContent = body.metadata;
      var tags = document.getElementById("tc-tags");
      tags.replaceChildren();
      body.tags.forEach(function (t) { tags.appendChild(el("span", t, "tag")); });
      var ended = body.attempts_ended;  // absent from a server of the release before
      if (body.final || (typeof ended === "number" && ended !== live.attempts_ended)) {
        // Output, error and attempts are final now, or an attempt ended (a retry, a
        // wait): show them, its error and traceback too (at once, or as soon as the
        // user has left the form they are filling in).
        reloadWhenIdle();
        return false;
      }
    });
  }

  /* The user is in a form (typing, or about to press its button): a reload now would
   * throw away what they typed. */
  function busy() {
    var active = document.activeElement;
    if (!active || active === document.body) return false;
    return /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName) || !!active.closest("form");
  }

  function reloadWhenIdle() {
    if (!busy()) { window.location.reload(); return; }
    document.addEventListener("focusout", function later() {
      // Where the focus went is known only once this event is over.
      setTimeout(function () {
        if (busy()) return;
        document.removeEventListener("focusout", later);
        window.location.reload();
      }, 0);
    });
  }

  /* Bulk action progress. */
  function liveBulk(live) {
    if (live.finished) return;
    poll(live.url, function (body) {
      var bar = document.getElementById("tc-progress");
      bar.max = Math.max(body.total, 1);
      bar.value = body.done + body.failed + (body.skipped || 0);
      document.getElementById("tc-progress-text").textContent =
        body.done + " done, " + body.failed + " failed" +
        (body.skipped ? ", " + body.skipped + " skipped (already finished)" : "") +
        ", of " + body.total;
      if (body.finished) {
        document.getElementById("tc-progress-state").textContent = "finished";
        return false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = data("tc-live"); if (list) liveList(list);
    var run = data("tc-live-run"); if (run) liveRun(run);
    var bulk = data("tc-live-bulk"); if (bulk) liveBulk(bulk);
    var all = document.getElementById("tc-select-all");
    if (all) all.addEventListener("change", function () {
      document.querySelectorAll("input[name=run]").forEach(function (b) { b.checked = all.checked; });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
    /* The payload is in the page once (its <pre>); a box that edits it starts from
     * that text when it is first opened. Left empty, the server uses the same payload. */
    document.querySelectorAll("textarea[data-fill-from]").forEach(function (box) {
      var details = box.closest("details"), source = document.getElementById(box.dataset.fillFrom);
      if (!details || !source) return;
      details.addEventListener("toggle", function () {
        if (details.open && !box.dataset.filled) {
          box.dataset.filled = "1";
          if (!box.value) box.value = source.textContent;
        }
      });
    });
    /* A form holding more than the site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE) would be
     * answered with a bare 400 and what was typed lost: it is not sent, and says why. */
    document.querySelectorAll("form[data-max-bytes]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var most = Number(form.dataset.maxBytes), size = 0;
        form.querySelectorAll("textarea, input:not([type=hidden])").forEach(function (field) {
          size += new Blob([field.value]).size;
        });
        if (size <= most) return;
        event.preventDefault();
        var note = form.querySelector(".tc-too-large");
        if (!note) {
          note = document.createElement("p");
          note.className = "problem tc-too-large";
          form.insertBefore(note, form.firstChild);
        }
        note.textContent = "Not sent: the form holds " + size + " bytes, more than the " +
          most + " this site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE). What you typed is kept.";
      });
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        if (target && navigator.clipboard) navigator.clipboard.writeText(target.innerText);
      });
    });
  });
})();

// uws-server web pages: live job list, live job page, definition editor, field hints.
// No framework and no build step. Text from the server is inserted with textContent,
// or as HTML the server rendered (and escaped) itself; never built from strings here.
"use strict";

const FINAL = ["COMPLETED", "ERROR", "ABORTED", "ARCHIVED"];
const ACTIVE = ["PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED", "UNKNOWN"];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const csrf = () => document.body.dataset.csrf || "";

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) {
    const err = new Error("HTTP " + r.status);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

function setPhase(el, phase) {
  el.textContent = phase;
  el.className = el.className.replace(/phase-[A-Z]+/, "phase-" + phase);
}

// ------------------------------------------------------------------ job list
// The page shows one page of the list, sorted and filtered by its query string; while
// jobs on it are live, the JSON of the same query is polled and, when a phase or the
// set of jobs changed, the rows are fetched again as server-rendered HTML.
function jobList() {
  const table = document.getElementById("jobs-table");
  const body = document.getElementById("jobs-body");
  const empty = document.getElementById("jobs-empty");
  const live = document.getElementById("jobs-live");
  const query = (table.dataset.query || "/ui/jobs").split("?")[1] || "";
  const url = "/ui/api/jobs?" + query;
  const rowsUrl = "/ui/jobs?" + query + (query ? "&" : "") + "fragment=1";
  const sigOf = (rows) => rows.map((r) => r.id + ":" + r.phase).join(",");
  let signature = sigOf(Array.from(body.rows).map((tr) => ({ id: tr.dataset.id, phase: tr.dataset.phase })));

  body.addEventListener("submit", (e) => {
    const msg = e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  async function loop() {
    for (;;) {
      let active = Array.from(body.rows).some((tr) => ACTIVE.includes(tr.dataset.phase));
      await sleep(active ? 1500 : 4000);
      if (document.hidden) continue;
      try {
        const data = await getJSON(url);
        const sig = sigOf(data.jobs.map((j) => ({ id: j.job_id, phase: j.phase })));
        if (sig !== signature) {
          const r = await fetch(rowsUrl, { credentials: "same-origin" });
          if (r.ok) {
            body.innerHTML = await r.text(); // server-rendered, escaped HTML
            signature = sig;
            empty.classList.toggle("hidden", data.jobs.length > 0);
            const count = document.getElementById("jobs-count");
            if (count) {
              count.textContent =
                data.total + (data.total === 1 ? " job" : " jobs") +
                (data.pages > 1 ? " · page " + data.page + " of " + data.pages : "");
            }
          }
        }
        active = data.jobs.some((j) => ACTIVE.includes(j.phase));
        live.textContent = active ? "updating live" : "";
      } catch (e) {
        if (e.status === 401) {
          live.textContent = "signed out";
          return;
        }
        live.textContent = "connection lost, retrying";
      }
    }
  }
  loop();
}

// ------------------------------------------------------------------ job page
function jobPage() {
  const box = document.getElementById("job");
  const details = document.getElementById("details");
  const phaseEl = document.getElementById("phase");
  const live = document.getElementById("live");
  const statusUrl = box.dataset.statusUrl;
  let phase = box.dataset.phase;
  let results = Number(box.dataset.results || 0);
  let provenance = Number(box.dataset.provenance || 0);

  async function refreshDetails() {
    const r = await fetch(box.dataset.fragmentUrl, { credentials: "same-origin" });
    if (r.ok) details.innerHTML = await r.text(); // server-rendered, escaped HTML
  }

  async function loop() {
    let afterFinal = 0;
    for (;;) {
      const final = FINAL.includes(phase);
      const url = final ? statusUrl : statusUrl + "?wait=25&phase=" + encodeURIComponent(phase);
      const started = Date.now();
      let s;
      try {
        live.textContent = final ? "" : "live";
        s = await getJSON(url);
      } catch (e) {
        if (e.status === 404) {
          live.textContent = "this job no longer exists";
          return;
        }
        live.textContent = "connection lost, retrying";
        await sleep(5000);
        continue;
      }
      const changed =
        s.phase !== phase || s.results.length !== results || s.provenance.length !== provenance;
      if (changed) {
        phase = s.phase;
        results = s.results.length;
        provenance = s.provenance.length;
        setPhase(phaseEl, phase);
        box.dataset.phase = phase;
        await refreshDetails();
      }
      if (FINAL.includes(phase)) {
        live.textContent = "";
        // Provenance is written just after the job ends: look a few more times.
        if (provenance >= 5 || afterFinal++ >= 10) return;
        await sleep(2000);
      } else if (Date.now() - started < 1000) {
        await sleep(1000); // the server answered at once: do not spin
      }
    }
  }
  loop();
}

// ------------------------------------------------------------------ submit form
// With novalidate the server has the last word; this only shows the browser's own
// opinion (range, step) under a field while it is typed. Not on "change": that fires on
// blur, i.e. on the mousedown of a click on a button, and the message appearing would
// move the button away before the mouseup, losing the click.
function submitForm() {
  const form = document.getElementById("submit-form");
  form.addEventListener("input", (ev) => {
    const input = ev.target;
    if (!input.name || input.type === "file") return;
    const err = document.getElementById("err-" + input.name);
    if (!err) return;
    err.textContent = input.validity.valid ? "" : input.validationMessage;
    input.closest(".field").classList.toggle("has-error", !input.validity.valid);
  });
}

// ------------------------------------------------------------------ editor
function editor() {
  const form = document.getElementById("editor");
  const status = document.getElementById("validation-status");
  const general = document.getElementById("general-errors");

  function renumber(container) {
    const group = container.dataset.group;
    container.querySelectorAll(":scope > .row").forEach((row, i) => {
      row.querySelectorAll("[name],[data-for],[id],label[for]").forEach((el) => {
        for (const attr of ["name", "data-for", "id", "for"]) {
          const value = el.getAttribute(attr);
          if (value) el.setAttribute(attr, value.replace(/(parameters|used|generated)\[(\d+|__i__)\]/, group + "[" + i + "]"));
        }
      });
    });
  }

  document.querySelectorAll("[data-add]").forEach((button) => {
    button.addEventListener("click", () => {
      const group = button.dataset.add;
      const container = document.getElementById("rows-" + group);
      const tpl = document.getElementById("tpl-" + group);
      const row = tpl.content.firstElementChild.cloneNode(true);
      container.appendChild(row);
      renumber(container);
      const first = row.querySelector("input,select,textarea");
      if (first) first.focus();
      schedule();
    });
  });

  form.addEventListener("click", (ev) => {
    const button = ev.target.closest("[data-remove]");
    if (!button) return;
    const row = button.closest(".row");
    const container = row.parentElement;
    row.remove();
    renumber(container);
    schedule();
  });

  let timer = null;
  let seq = 0;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  }

  async function check() {
    const mine = ++seq;
    status.textContent = "checking…";
    let data;
    try {
      const r = await fetch(form.dataset.validateUrl, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf(), Accept: "application/json" },
      });
      data = await r.json();
    } catch (e) {
      status.textContent = "could not check";
      return;
    }
    if (mine !== seq) return; // a newer check is on its way
    form.querySelectorAll(".field-error[data-for]").forEach((el) => {
      el.textContent = "";
      el.parentElement.classList.remove("has-error");
    });
    const list = general.querySelector("ul");
    list.replaceChildren();
    for (const p of data.errors || []) {
      const el = p.input ? form.querySelector('.field-error[data-for="' + CSS.escape(p.input) + '"]') : null;
      if (el) {
        el.textContent = el.textContent ? el.textContent + "; " + p.reason : p.reason;
        el.parentElement.classList.add("has-error");
      } else {
        const li = document.createElement("li");
        li.textContent = p.field + ": " + p.reason;
        list.appendChild(li);
      }
    }
    general.classList.toggle("hidden", list.children.length === 0);
    status.textContent = data.valid ? "✓ valid" : (data.errors.length + " problem" + (data.errors.length === 1 ? "" : "s"));
    status.className = data.valid ? "ok" : "bad";
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
}

// ------------------------------------------------------------------ ticks (Find data, picker)
// A table of checkboxes: a "tick all" box in the header, the row highlighted when ticked,
// and a callback with the number ticked (the server needs none of this to work).
function tickTable(table, onChange) {
  const boxes = () => Array.from(table.querySelectorAll("tbody input[type=checkbox]"));
  const all = table.querySelector("thead input[type=checkbox]");
  function update() {
    const ticked = boxes().filter((b) => b.checked).length;
    boxes().forEach((b) => b.closest("tr").classList.toggle("ticked", b.checked));
    if (all) {
      all.checked = ticked > 0 && ticked === boxes().length;
      all.indeterminate = ticked > 0 && ticked < boxes().length;
    }
    onChange(ticked);
  }
  if (all) {
    all.disabled = boxes().length === 0;
    all.addEventListener("change", () => {
      boxes().forEach((b) => { b.checked = all.checked; });
      update();
    });
  }
  table.addEventListener("change", (ev) => { if (ev.target !== all) update(); });
  update();
}

// The ticked observations are kept for the tab (sessionStorage) across pages, sorting
// and new searches, and sent with "Analyse with" even when ticked on another page.
const SELECTION_KEY = "uws-find-selection";
function loadSelection() {
  try {
    const ids = JSON.parse(sessionStorage.getItem(SELECTION_KEY) || "[]");
    return new Set(Array.isArray(ids) ? ids.map(String) : []);
  } catch (e) {
    return new Set();
  }
}

function findPage() {
  const results = document.getElementById("results");
  const form = document.getElementById("analyse-form");
  const count = document.getElementById("selected-count");
  const clear = document.getElementById("clear-selection");
  const buttons = Array.from(document.querySelectorAll("#analyse-bar button.analyse"));
  const selection = loadSelection();
  const boxes = results ? Array.from(results.querySelectorAll("tbody input[name=obs_id]")) : [];
  boxes.forEach((b) => { b.checked = b.checked || selection.has(b.value); });
  function changed() {
    boxes.forEach((b) => (b.checked ? selection.add(b.value) : selection.delete(b.value)));
    try { sessionStorage.setItem(SELECTION_KEY, JSON.stringify(Array.from(selection))); } catch (e) { /* private mode */ }
    const here = boxes.filter((b) => b.checked).length;
    const elsewhere = selection.size - here;
    if (count) count.textContent = selection.size + " selected" + (elsewhere ? " (" + elsewhere + " on other pages)" : "");
    if (clear) clear.classList.toggle("hidden", selection.size === 0);
    buttons.forEach((b) => { b.disabled = selection.size === 0; });
  }
  if (results) tickTable(results, changed);
  else changed();
  if (clear) {
    clear.addEventListener("click", () => {
      selection.clear();
      boxes.forEach((b) => { b.checked = false; });
      if (results) results.dispatchEvent(new Event("change"));
      changed();
    });
  }
  if (form) {
    form.addEventListener("submit", () => {
      const here = new Set(boxes.map((b) => b.value));
      for (const id of selection) {
        if (here.has(id)) continue;
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = "obs_id";
        input.value = id;
        form.appendChild(input);
      }
      try { sessionStorage.removeItem(SELECTION_KEY); } catch (e) { /* private mode */ }
    });
  }
  // Picking a known target fills RA/Dec at once (the server resolves it too).
  const target = document.getElementById("f-target");
  if (target) {
    target.addEventListener("change", () => {
      const wanted = target.value.trim().toLowerCase();
      const option = Array.from(document.querySelectorAll("#target-names option"))
        .find((o) => o.value.toLowerCase() === wanted);
      if (!option) return;
      document.getElementById("f-ra").value = option.dataset.ra;
      document.getElementById("f-dec").value = option.dataset.dec;
      const radius = document.getElementById("f-radius");
      if (!radius.value) radius.value = "2";
    });
  }
}

function submitPage() {
  submitForm();
  document.querySelectorAll(".picker").forEach((picker) => {
    const label = picker.querySelector("[id^=picked-]");
    tickTable(picker.querySelector("table"), (n) => { if (label) label.textContent = n + " ticked"; });
  });
}

const PAGES = { jobs: jobList, job: jobPage, submit: submitPage, editor: editor, find: findPage };
document.addEventListener("DOMContentLoaded", () => {
  const init = PAGES[document.body.dataset.page];
  if (init) init();
});

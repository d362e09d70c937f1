// The job page's live view (templates/job_live.tpl): progress bar, elapsed time,
// expected end, and the stdout/stderr tails (#stdout, #stderr of the job details),
// from GET /ui/api/jobs/<jobname>/<id>/live every 2 s while the job is active.
// A progress message older than STALE_SECONDS is hidden: a script that stopped
// reporting should not keep saying "simulating run 2/4" for an hour.
"use strict";

(function () {
  const POLL_MS = 2000;
  const STALE_SECONDS = 60;
  const TAIL_BYTES = 16384;
  const FINAL_PHASES = ["COMPLETED", "ERROR", "ABORTED", "ARCHIVED"];
  const box = document.getElementById("job-live");
  if (!box) return;
  const url = box.dataset.liveUrl + "?bytes=" + TAIL_BYTES;
  const el = (id) => document.getElementById(id);

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s % 60) : m + ":" + two(s % 60);
  }

  function when(iso, final) {
    if (!iso) return "—";
    const t = new Date(iso);
    const text = t.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
    if (final) return text;
    const left = (t.getTime() - Date.now()) / 1000;
    return left > 1 ? text + " (in " + duration(left) + ")" : text + " (any moment now)";
  }

  function showTail(id, tail) {
    const pre = el(id); // re-found each time: app.js re-renders the details
    if (!pre || !tail) return;
    const text = tail.text || "(empty)";
    if (pre.textContent === text) return;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    pre.textContent = text;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function render(d) {
    const bar = el("live-bar");
    const percent = el("live-percent");
    const message = el("live-message");
    const done = d.phase === "COMPLETED";
    let fraction = d.fraction;
    if (done) fraction = 1;
    if (fraction === null || fraction === undefined) {
      if (d.final) bar.value = 0;
      else bar.removeAttribute("value"); // indeterminate: running, nothing reported
      percent.textContent = "";
    } else {
      bar.value = fraction;
      percent.textContent = Math.floor(fraction * 100) + " %";
    }
    const stale = d.final || d.age === null || d.age > STALE_SECONDS;
    message.textContent = stale ? "" : d.message || "";
    message.classList.toggle("stale", stale);
    el("live-elapsed").textContent = duration(d.elapsed);
    el("live-expected").textContent = when(d.expected_end, d.final);
    box.classList.toggle("done", done);
    box.dataset.phase = d.phase;
    showTail("stdout", d.stdout);
    showTail("stderr", d.stderr);
  }

  async function loop() {
    for (;;) {
      if (!document.hidden) {
        try {
          const r = await fetch(url, {
            credentials: "same-origin",
            headers: { Accept: "application/json" },
          });
          if (r.status === 401 || r.status === 404) {
            el("live-state").textContent = r.status === 404 ? "this job no longer exists" : "signed out";
            return;
          }
          if (r.ok) {
            const d = await r.json();
            render(d);
            el("live-state").textContent = d.final ? "" : "updating every 2 s";
            if (d.final || FINAL_PHASES.includes(d.phase)) return;
          }
        } catch (e) {
          el("live-state").textContent = "connection lost, retrying";
        }
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  loop();
})();

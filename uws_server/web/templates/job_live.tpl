%# The live view of a job (issue 13): progress bar, elapsed time, expected end, and
%# the stdout/stderr tails below (#stdout, #stderr) kept up to date by static/live.js,
%# which polls /ui/api/jobs/<jobname>/<id>/live every 2 s while the job is active.
<link rel="stylesheet" href="/ui/static/live.css">
<section class="card live" id="job-live"
         data-live-url="/ui/api/jobs/{{q(job.jobname)}}/{{q(job.job_id)}}/live"
         data-phase="{{job.phase.value}}">
  <h2>Progress</h2>
  <div class="live-row">
    <progress id="live-bar" max="1" aria-label="progress of the job"></progress>
    <span id="live-percent" class="live-percent">{{'100 %' if job.phase.value == 'COMPLETED' else ''}}</span>
  </div>
  <p id="live-message" class="live-message" aria-live="polite"></p>
  <table class="kv live-times">
    <tr><th>Elapsed</th><td id="live-elapsed">—</td></tr>
    <tr><th>Expected end</th><td id="live-expected">—</td></tr>
  </table>
  <p class="muted small" id="live-state"></p>
</section>
<script src="/ui/static/live.js" defer></script>

<section class="actions" id="actions">
% if pending:
  <form method="post" action="{{base}}/phase" class="inline">
    <input type="hidden" name="_csrf" value="{{ctx.csrf}}"><input type="hidden" name="phase" value="RUN">
    <button type="submit" class="primary" id="run">Run</button>
  </form>
% end
% if not final:
  <form method="post" action="{{base}}/phase" class="inline">
    <input type="hidden" name="_csrf" value="{{ctx.csrf}}"><input type="hidden" name="phase" value="ABORT">
    <button type="submit" id="abort">Abort</button>
  </form>
% end
  <a href="{{rerun_url}}" class="button" id="run-again">Run again with these parameters</a>
  <details class="inline danger">
    <summary>Delete…</summary>
    <form method="post" action="{{base}}/delete" class="inline">
      <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
      <button type="submit" class="danger" id="delete">Delete the job and its files</button>
    </form>
  </details>
</section>

<div class="grid">
<section class="card">
<h2>Summary</h2>
<table class="kv" id="summary">
  <tr><th>Definition</th><td>{{job.jobname}}</td></tr>
  <tr><th>Owner</th><td>{{job.owner}}</td></tr>
% if job.run_id:
  <tr><th>Run id</th><td>{{job.run_id}}</td></tr>
% end
  <tr><th>Phase</th><td id="summary-phase">{{job.phase.value}}</td></tr>
  <tr><th>Created</th><td>{{iso(job.creation_time)}}</td></tr>
  <tr><th>Started</th><td id="start-time">{{iso(job.start_time) or '—'}}</td></tr>
  <tr><th>Ended</th><td id="end-time">{{iso(job.end_time) or '—'}}</td></tr>
% if duration:
  <tr><th>Duration</th><td>{{duration}}</td></tr>
% end
  <tr><th>Time limit</th><td>{{str(job.execution_duration) + ' s' if job.execution_duration else 'none'}}</td></tr>
% if job.quote:
  <tr><th>Quote</th><td>{{iso(job.quote)}}</td></tr>
% end
  <tr><th>Destruction</th><td>{{iso(job.destruction_time)}}
% if pending:
    <form method="post" action="{{base}}/destruction" class="inline small">
      <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
      <input type="datetime-local" name="destruction" step="1" aria-label="new destruction time (UTC)" required>
      <button type="submit">Change</button> <span class="muted">UTC</span>
    </form>
% end
  </td></tr>
</table>
% if job.error_summary:
<h3>Error</h3>
<p class="error-box" id="job-error">{{job.error_summary}}</p>
% end
</section>

<section class="card">
<h2>Parameters</h2>
<table class="kv" id="parameters">
% for name, value in job.parameters.items():
  <tr><th>{{name}}</th><td>
%   if name in uploaded:
    <a href="{{base}}/parameters/{{q(name)}}">{{value}}</a> <span class="muted">(uploaded)</span>
%   else:
    <span class="value">{{value}}</span>
%   end
  </td></tr>
% end
% if not job.parameters:
  <tr><td class="muted">no parameters</td></tr>
% end
</table>
% if editable:
<details class="edit" id="edit-box"><summary>Edit parameters</summary>
<form method="post" action="{{base}}/parameters" id="edit-parameters">
<input type="hidden" name="_csrf" value="{{ctx.csrf}}">
<table class="kv">
%   for name, value, datatype in editable:
  <tr><th><label for="param-{{name}}">{{name}}</label></th><td>
    <input id="param-{{name}}" name="{{name}}" value="{{value}}" class="wide"></td></tr>
%   end
</table>
<p><button type="submit" id="save-parameters">Save parameters</button>
  <span class="muted small">The job is PENDING: its parameters may still change (inputs are fixed).</span></p>
</form>
</details>
% end
</section>
</div>

<section class="card" id="results">
<h2>Results</h2>
% for sm in summaries:
<div class="summary" id="summary-{{sm.name}}">
  <h3>Key numbers <span class="muted small">from <a href="{{sm.url}}">{{sm.name}}</a></span></h3>
%   if sm.problem:
  <p class="error-box">{{sm.name}} {{sm.problem}}</p>
%   else:
  <table class="numbers">
%     for row in sm.rows:
    <tr><th>{{row.key}}</th><td class="num">{{row.value}}{{(' ± ' + row.error) if row.error else ''}}</td></tr>
%     end
  </table>
%   end
</div>
% end
% if not results:
<p class="muted" id="no-results">{{'No results.' if final else 'Results appear here when the job has finished.'}}</p>
% end
<div class="plots">
% for r in results:
%   if r.preview in ('image', 'fits'):
<figure class="result plot" data-name="{{r.name}}">
%     if r.preview == 'fits':
  <img src="{{r.quicklook_url}}" alt="quick-look of {{r.name}} (not available)" class="preview">
%     else:
  <img src="{{r.url}}" alt="{{r.name}}" class="preview">
%     end
  <figcaption><a href="{{r.url}}" class="result-link">{{r.name}}</a>
    <span class="muted">{{'FITS quick-look · ' if r.preview == 'fits' else ''}}{{r.content_type}} · {{human_size(r.size)}}</span>
    <a href="{{r.url}}?download=1" class="small">download</a></figcaption>
</figure>
%   end
% end
</div>
% for r in results:
%   if r.preview not in ('image', 'fits'):
<div class="result" data-name="{{r.name}}">
  <h3><a href="{{r.url}}" class="result-link">{{r.name}}</a>
    <span class="muted">{{r.content_type}} · {{human_size(r.size)}}</span>
    <a href="{{r.url}}?download=1" class="small">download</a></h3>
%     if r.preview == 'text' and r.collapsed:
  <details class="long-text"><summary>Show the text ({{r.lines}} lines{{', beginning only' if r.cut else ''}})</summary>
  <pre class="preview">{{r.text}}</pre></details>
%     elif r.preview == 'text':
  <pre class="preview">{{r.text}}</pre>
%     end
</div>
%   end
% end
</section>

<section class="card" id="logs">
<h2>Output</h2>
<h3>stdout <a href="{{base}}/log/stdout" class="small">full</a></h3>
% if stdout_cut:
<p class="muted small">Only the end is shown.</p>
% end
<pre class="log" id="stdout">{{stdout or '(empty)'}}</pre>
<h3>stderr <a href="{{base}}/log/stderr" class="small">full</a></h3>
% if stderr_cut:
<p class="muted small">Only the end is shown.</p>
% end
<pre class="log" id="stderr">{{stderr or '(empty)'}}</pre>
</section>

<section class="card" id="provenance">
<h2>Provenance</h2>
% if not provenance:
<p class="muted" id="no-provenance">{{'No provenance yet.' if final else 'No provenance yet: it is recorded when the job has finished.'}}</p>
% else:
%   for p in provenance:
%     if p.format == 'svg':
%       include('provgraph_view.tpl', graph=graph, src=p.url, map_name='prov-' + job.job_id, img_id='provenance-svg', alt='provenance graph of job ' + job.job_id)
%     end
%   end
<form method="get" action="{{base}}/provenance-graph" class="filters" id="cross-job">
  <strong>Across jobs:</strong>
  <label>Direction <select name="direction"><option value="BACK">BACK (what it came from)</option><option value="FORWARD">FORWARD (what was made from it)</option></select></label>
  <label>Depth (jobs) <select name="depth">
%   for d in depths:
    <option value="{{d}}" {{'selected' if d == '2' else ''}}>{{d}}</option>
%   end
  </select></label>
  <button type="submit">Show the chain</button>
</form>
<ul class="downloads" id="provenance-links">
%   for p in provenance:
  <li><a href="{{p.url}}?download=1" data-format="{{p.format}}">{{p.label}}</a>
    <span class="muted small">API: <a href="{{p.rest_url}}"><code>{{p.rest_url}}</code></a></span></li>
%   end
</ul>
% end
</section>

% rebase('base.tpl', page='jobs')
<h1>{{'All jobs' if ctx.user.is_admin else 'My jobs'}}</h1>
<form method="get" action="/ui/jobs" class="filters" id="job-filter">
  <label>Phase
    <select name="phase" id="phase-filter">
      <option value="">any</option>
      <option value="active" {{'selected' if phase == 'active' else ''}}>pending or running</option>
% for p in phases:
      <option value="{{p}}" {{'selected' if phase.upper() == p else ''}}>{{p}}</option>
% end
    </select>
  </label>
  <label>Definition
    <select name="jobname" id="jobname-filter">
      <option value="">any</option>
% for n in names:
      <option value="{{n}}" {{'selected' if n == jobname else ''}}>{{n}}</option>
% end
    </select>
  </label>
  <button type="submit">Filter</button>
  <span class="live muted" id="jobs-live" aria-live="polite"></span>
</form>
<table class="jobs" id="jobs-table" data-phase="{{phase}}" data-jobname="{{jobname}}">
<thead><tr><th>Created (UTC)</th><th>Definition</th><th>Job</th><th>Run id</th><th>Owner</th><th>Phase</th></tr></thead>
<tbody id="jobs-body">
% for j in jobs:
<tr data-id="{{j['job_id']}}"><td>{{j['creation_time']}}</td><td>{{j['jobname']}}</td><td><a href="{{j['url']}}">{{j['job_id']}}</a></td><td>{{j['run_id']}}</td><td>{{j['owner']}}</td><td><span class="phase phase-{{j['phase']}}">{{j['phase']}}</span></td></tr>
% end
</tbody>
</table>
<p id="jobs-empty" class="muted{{' hidden' if jobs else ''}}">No jobs match.</p>

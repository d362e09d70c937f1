% rebase('base.tpl', page='home')
<h1>Run a job</h1>
<p class="muted">Choose what to run. Each job gets its own working directory; follow it on
<a href="/ui/jobs">My jobs</a>.</p>
<div class="cards" id="definitions">
% for d in definitions:
  <article class="card def" data-name="{{d.name}}">
    <h2><a href="/ui/submit/{{q(d.name)}}">{{d.name}}</a></h2>
    <p>{{d.description}}</p>
    <p class="meta">
%   if d.type:
      <span class="tag">{{d.type}}{{('/' + d.subtype) if d.subtype else ''}}</span>
%   end
      <span>{{len(d.parameters)}} parameter{{'' if len(d.parameters) == 1 else 's'}}</span>
%   if d.used:
      <span>{{len(d.used)}} input{{'' if len(d.used) == 1 else 's'}}</span>
%   end
      <span>version {{d.version}}</span>
%   if d.doculink.startswith(('http://', 'https://')):
      <a href="{{d.doculink}}" rel="noopener noreferrer">documentation</a>
%   end
    </p>
    <a class="button" href="/ui/submit/{{q(d.name)}}">Open form</a>
  </article>
% end
% if not definitions:
  <p class="muted">No job definitions yet.</p>
% end
</div>
% if recent:
<h2>Recent jobs</h2>
<table class="jobs">
<thead><tr><th>Created (UTC)</th><th>Definition</th><th>Job</th><th>Phase</th></tr></thead>
<tbody>
%   for j in recent:
<tr><td>{{j['creation_time']}}</td><td>{{j['jobname']}}</td><td><a href="{{j['url']}}">{{j['job_id']}}</a></td><td><span class="phase phase-{{j['phase']}}">{{j['phase']}}</span></td></tr>
%   end
</tbody>
</table>
% end

% rebase('base.tpl', page='job')
<p class="crumbs"><a href="/ui/jobs">My jobs</a> › <a href="/ui/submit/{{q(job.jobname)}}">{{job.jobname}}</a> ›</p>
<div class="job-head" id="job" data-status-url="/ui/api/jobs/{{q(job.jobname)}}/{{q(job.job_id)}}"
     data-fragment-url="{{base}}?fragment=1" data-phase="{{job.phase.value}}"
     data-results="{{len(results)}}" data-provenance="{{len(provenance)}}">
  <h1>Job <code>{{job.job_id}}</code></h1>
  <span id="phase" class="phase big phase-{{job.phase.value}}" aria-live="polite">{{job.phase.value}}</span>
  <span id="live" class="muted"></span>
</div>
% include('job_live.tpl')
<div id="details">
% include('job_details.tpl')
</div>

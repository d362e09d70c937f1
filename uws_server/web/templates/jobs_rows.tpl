% for j in jobs:
<tr data-id="{{j['job_id']}}" data-phase="{{j['phase']}}"><td>{{j['creation_time']}}</td><td>{{j['jobname']}}</td><td><a href="{{j['url']}}">{{j['job_id']}}</a></td><td>{{j['run_id']}}</td><td>{{j['owner']}}</td><td><span class="phase phase-{{j['phase']}}">{{j['phase']}}</span></td>
<td class="row-actions">
% if j['can_run']:
  <form method="post" action="{{j['url']}}/phase"><input type="hidden" name="_csrf" value="{{ctx.csrf}}"><input type="hidden" name="phase" value="RUN"><input type="hidden" name="back" value="{{back}}"><button type="submit" class="primary" data-action="run">Run</button></form>
% end
% if j['can_abort']:
  <form method="post" action="{{j['url']}}/phase"><input type="hidden" name="_csrf" value="{{ctx.csrf}}"><input type="hidden" name="phase" value="ABORT"><input type="hidden" name="back" value="{{back}}"><button type="submit" data-action="abort">Abort</button></form>
% end
  <a href="{{j['url']}}/rerun" class="button" data-action="rerun" title="run again with these parameters">Run again</a>
  <form method="post" action="{{j['url']}}/delete" data-confirm="Delete job {{j['job_id']}} and its files?"><input type="hidden" name="_csrf" value="{{ctx.csrf}}"><input type="hidden" name="back" value="{{back}}"><button type="submit" class="danger" data-action="delete">Delete</button></form>
</td></tr>
% end

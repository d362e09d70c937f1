% rebase('base.tpl', page='admin')
<h1>Administration</h1>
% if get('new_token'):
<div class="token-box" id="new-token">
  <p>Token for <strong>{{new_token[0]}}</strong>. It is shown only this once: copy it now.</p>
  <code id="token-value">{{new_token[1]}}</code>
</div>
% end
<section class="card">
<h2>Users</h2>
<table class="list" id="users">
<thead><tr><th>Name</th><th>Admin</th><th>Roles</th><th>Active jobs</th><th>Status</th><th></th></tr></thead>
<tbody>
% for u in users:
<tr data-user="{{u.name}}" class="{{'disabled' if u.disabled else ''}}">
  <td>{{u.name}}</td>
  <td>{{'yes' if u.is_admin else ''}}</td>
  <td>
    <form method="post" action="/ui/admin/users/{{q(u.name)}}/roles" class="inline">
      <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
      <input type="text" name="roles" value="{{', '.join(u.roles)}}" size="14" aria-label="roles of {{u.name}}">
      <button type="submit" class="small">set</button>
    </form>
  </td>
  <td>{{active.get(u.name, 0)}}</td>
  <td class="status">{{'disabled' if u.disabled else 'enabled'}}</td>
  <td class="nowrap">
%   if u.name != ctx.user.name:
    <form method="post" action="/ui/admin/users/{{q(u.name)}}/{{'enable' if u.disabled else 'disable'}}" class="inline">
      <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
      <button type="submit" class="small{{'' if u.disabled else ' danger'}}">{{'Enable' if u.disabled else 'Disable'}}</button>
    </form>
%   end
    <form method="post" action="/ui/admin/users/{{q(u.name)}}/token" class="inline">
      <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
      <button type="submit" class="small">New token</button>
    </form>
  </td>
</tr>
% end
</tbody>
</table>
<h3>Add a user</h3>
<form method="post" action="/ui/admin/users" class="inline" id="add-user">
  <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
  <input type="text" name="name" placeholder="name" required aria-label="user name">
  <input type="text" name="roles" placeholder="roles, e.g. operator" aria-label="roles">
  <label><input type="checkbox" name="admin" value="true"> admin</label>
  <button type="submit">Add user</button>
</form>
</section>
<section class="card">
<h2>Active jobs</h2>
% if not jobs:
<p class="muted" id="no-active-jobs">No job is pending, queued or running.</p>
% else:
<table class="jobs" id="active-jobs">
<thead><tr><th>Created (UTC)</th><th>Definition</th><th>Job</th><th>Owner</th><th>Phase</th><th>Started</th></tr></thead>
<tbody>
%   for j in jobs:
<tr><td>{{iso(j.creation_time)}}</td><td>{{j.jobname}}</td>
  <td><a href="/ui/jobs/{{q(j.jobname)}}/{{q(j.job_id)}}">{{j.job_id}}</a></td>
  <td>{{j.owner}}</td><td><span class="phase phase-{{j.phase.value}}">{{j.phase.value}}</span></td><td>{{iso(j.start_time)}}</td></tr>
%   end
</tbody>
</table>
% end
</section>

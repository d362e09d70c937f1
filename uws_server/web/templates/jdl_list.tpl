% rebase('base.tpl', page='jdl')
<h1>Job definitions</h1>
<p><a class="button primary" href="/ui/jdl/new" id="new-definition">New definition</a></p>
<table class="list" id="definitions-table">
<thead><tr><th>Name</th><th>Description</th><th>Version</th><th>Parameters</th><th></th></tr></thead>
<tbody>
% for d in definitions:
<tr data-name="{{d.name}}">
  <td><a href="/ui/jdl/{{q(d.name)}}/edit">{{d.name}}</a></td>
  <td>{{d.description}}</td>
  <td>{{d.version}}</td>
  <td>{{len(d.parameters)}}</td>
  <td class="nowrap">
    <a href="/ui/jdl/{{q(d.name)}}/edit">edit</a> ·
    <a href="/ui/jdl/{{q(d.name)}}/history">history</a> ·
    <a href="/ui/jdl/{{q(d.name)}}/votable">VOTable</a> ·
    <a href="/ui/submit/{{q(d.name)}}">form</a>
    <details class="inline danger"><summary>delete</summary>
      <form method="post" action="/ui/jdl/{{q(d.name)}}/delete" class="inline">
        <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
        <button type="submit" class="danger">Delete {{d.name}}</button>
      </form>
    </details>
  </td>
</tr>
% end
</tbody>
</table>
% if broken:
<h2>Files that could not be loaded</h2>
<ul class="error-box">
%   for b in broken:
  <li><code>{{b.file}}</code>: {{b.reason}}</li>
%   end
</ul>
% end
<section class="card">
<h2>Upload a VOTable file</h2>
<p class="muted">An OPUS job definition (<code>&lt;name&gt;_vot.xml</code>) or its JSON form; it is validated before anything is saved.</p>
<form method="post" action="/ui/jdl/upload" enctype="multipart/form-data" class="inline" id="upload-form">
  <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
  <input type="file" name="file" accept=".xml,.json,application/xml" required>
  <button type="submit">Upload and save</button>
</form>
</section>

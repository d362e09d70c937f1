% rebase('base.tpl', page='editor')
<p class="crumbs"><a href="/ui/jdl">Job definitions</a> ›</p>
<h1>{{title}}</h1>
% if original:
<p class="muted">Saving keeps the previous version in the <a href="/ui/jdl/{{q(original)}}/history">history</a>.
Changing the name saves a new definition.</p>
% end
% if error:
<div class="error-box" id="upload-error" role="alert">
  <strong>{{error}}</strong>
  <ul>
%   for r in error_reasons:
    <li>{{r}}</li>
%   end
  </ul>
</div>
% end
<div class="error-box{{'' if general else ' hidden'}}" id="general-errors">
  <ul>
% for g in general:
    <li>{{g}}</li>
% end
  </ul>
</div>
<form method="post" action="/ui/jdl/save" id="editor" class="editor" novalidate data-validate-url="/ui/api/jdl/validate">
<input type="hidden" name="_csrf" value="{{ctx.csrf}}">
<input type="hidden" name="_original" value="{{original}}">
<section class="card">
<h2>Definition</h2>
<div class="efgrid">
% include('jdl_input.tpl', label='Name', key='name', value=v['name'], kind='text', ph='letters, digits, _ and -')
% include('jdl_input.tpl', label='Version', key='version', value=v['version'], kind='text')
% include('jdl_input.tpl', label='Type', key='type', value=v['type'], kind='text', ph='e.g. analysis')
% include('jdl_input.tpl', label='Subtype', key='subtype', value=v['subtype'], kind='text')
% include('jdl_input.tpl', label='Contact name', key='contact_name', value=v['contact_name'], kind='text')
% include('jdl_input.tpl', label='Contact email', key='contact_email', value=v['contact_email'], kind='text')
% include('jdl_input.tpl', label='Time limit (s)', key='execution_duration', value=v['execution_duration'], kind='text', ph='0 = service default')
% include('jdl_input.tpl', label='Quote (s)', key='quote', value=v['quote'], kind='text', ph='expected run time')
% include('jdl_input.tpl', label='Documentation URL', key='doculink', value=v['doculink'], kind='text', ph='https://…', wide=True)
% include('jdl_input.tpl', label='Description', key='description', value=v['description'], kind='textarea', wide=True, rows=2)
% include('jdl_input.tpl', label='Script (bash; parameters arrive as environment variables)', key='script', value=v['script'], kind='textarea', wide=True, rows=6, cls='code')
% include('jdl_input.tpl', label='Slurm options (one a line)', key='sbatch_options', value=v['sbatch_options'], kind='textarea', wide=True, rows=2, cls='code')
</div>
</section>
% for group, heading, add in (('parameters', 'Parameters', 'Add parameter'), ('used', 'Inputs (used entities)', 'Add input'), ('generated', 'Outputs (generated entities)', 'Add output')):
<section class="card">
<h2>{{heading}}</h2>
<div class="rows" id="rows-{{group}}" data-group="{{group}}">
%   for i, row in enumerate(v[group]):
%     include('jdl_row.tpl', group=group, i=i, row=row)
%   end
</div>
<button type="button" data-add="{{group}}" id="add-{{group}}">{{add}}</button>
</section>
% end
<div class="buttons sticky">
  <span id="validation-status" class="muted" aria-live="polite"></span>
  <button type="submit" class="primary" id="save">Save</button>
</div>
</form>
% for group in ('parameters', 'used', 'generated'):
<template id="tpl-{{group}}">
%   include('jdl_row.tpl', group=group, i='__i__', row={})
</template>
% end
<section class="card">
<h2>Upload a VOTable file instead</h2>
<form method="post" action="/ui/jdl/upload" enctype="multipart/form-data" class="inline">
  <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
  <input type="file" name="file" accept=".xml,.json,application/xml" required>
  <button type="submit">Upload and save</button>
</form>
</section>

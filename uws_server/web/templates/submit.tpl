% rebase('base.tpl', page='submit')
<p class="crumbs"><a href="/ui/">Run a job</a> ›</p>
<h1>{{defn.name}}</h1>
<p class="lead" id="definition-description">{{defn.description}}</p>
% if defn.doculink.startswith(('http://', 'https://')):
<p><a href="{{defn.doculink}}" rel="noopener noreferrer">Documentation</a></p>
% end
% if get('error'):
<p class="error-box" id="form-error">{{error}}</p>
% end
% if any(f.error for f in fields):
<p class="error-box" id="form-problems">Please correct the fields marked below.</p>
% end
<form method="post" action="/ui/submit/{{q(defn.name)}}" enctype="multipart/form-data"
      novalidate class="jobform" id="submit-form">
<input type="hidden" name="_csrf" value="{{ctx.csrf}}">
% for f in fields:
<div class="field{{' has-error' if f.error else ''}}" id="field-{{f.name}}">
  <label for="f-{{f.name}}">{{f.name}}
%   if f.required:
    <span class="req" title="required">*</span>
%   end
  </label>
  <div class="control">
%   if f.widget == 'number':
    <input type="number" id="f-{{f.name}}" name="{{f.name}}" value="{{f.value}}" step="{{f.step}}" min="{{f.min}}" max="{{f.max}}">
%   elif f.widget == 'select':
    <select id="f-{{f.name}}" name="{{f.name}}">
%     if not f.required or f.value not in f.options:
      <option value="">—</option>
%     end
%     for o in f.options:
      <option value="{{o}}" {{'selected' if o == f.value else ''}}>{{o}}</option>
%     end
    </select>
%   elif f.widget == 'checkbox':
    <input type="checkbox" id="f-{{f.name}}" name="{{f.name}}" value="true" {{'checked' if f.checked else ''}}>
%   elif f.widget == 'observations':
    <div class="picker" id="picks-{{f.name}}">
      <div class="picker-head">
        <span class="muted small" id="picked-{{f.name}}">{{len(f.ticked)}} ticked</span>
        <a href="/ui/find" class="small">search more in Find data</a>
      </div>
      <div class="table-wrap picker-scroll">
      <table class="list picks">
        <thead><tr><th class="tick"><input type="checkbox" class="tick-all" aria-label="tick all" title="tick all"></th><th>Obs id</th><th>Target</th><th>Date (UTC)</th><th class="num">Livetime</th><th class="num">Zenith</th></tr></thead>
        <tbody>
%     for r in f.rows:
          <tr data-obs-id="{{r.obs_id}}" class="{{'ticked' if str(r.obs_id) in f.ticked else ''}}">
            <td class="tick"><input type="checkbox" name="pick.{{f.name}}" value="{{r.obs_id}}" id="pick-{{f.name}}-{{r.obs_id}}" {{'checked' if str(r.obs_id) in f.ticked else ''}}></td>
            <td><label for="pick-{{f.name}}-{{r.obs_id}}"><code>{{r.obs_id}}</code></label></td>
            <td>{{r.target}}</td>
            <td class="nowrap">{{r.date}}</td>
            <td class="num nowrap">{{r.livetime}}</td>
            <td class="num">{{(r.zenith + '°') if r.zenith else ''}}</td>
          </tr>
%     end
        </tbody>
      </table>
      </div>
%     if f.more:
      <p class="muted small">{{f.more}} more observation{{'s' if f.more != 1 else ''}}: find them in <a href="/ui/find">Find data</a>, or type their ids.</p>
%     end
      <input type="text" id="f-{{f.name}}" name="{{f.name}}" value="{{f.value}}" placeholder="more ids, e.g. 1001 1002 or 1001-1004" class="more-ids">
    </div>
%   elif f.widget == 'entity':
    <input type="file" id="f-{{f.name}}" name="file.{{f.name}}" accept="{{f.accept}}">
    <span class="or">or</span>
    <input type="text" id="r-{{f.name}}" name="{{f.name}}" value="{{f.value}}" placeholder="entity id or URL" class="ref">
%   else:
    <input type="text" id="f-{{f.name}}" name="{{f.name}}" value="{{f.value}}">
%   end
%   if f.unit:
    <span class="unit">{{f.unit}}</span>
%   end
  </div>
  <p class="desc">{{f.description}}
    <span class="type">{{f.datatype}}{{(', ' + f.min + ' to ' + f.max) if f.widget == 'number' and f.min and f.max else ''}}{{('; ' + f.hint) if f.hint else ''}}</span>
  </p>
  <p class="field-error" id="err-{{f.name}}" role="alert">{{f.error}}</p>
</div>
% end
% if not fields:
<p class="muted">This job takes no parameters.</p>
% end
<div class="field">
  <label for="f-runid">Run id</label>
  <div class="control"><input type="text" id="f-runid" name="_runid" value="{{run_id}}" placeholder="optional label for your own use"></div>
</div>
<div class="buttons">
  <button type="submit" name="_action" value="create" id="create">Create</button>
  <button type="submit" name="_action" value="run" class="primary" id="create-run">Create and run</button>
</div>
</form>

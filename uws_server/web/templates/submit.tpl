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
    <input type="text" id="f-{{f.name}}" name="{{f.name}}" value="{{f.value}}" placeholder="more ids">
    <fieldset class="picks" id="picks-{{f.name}}">
%     for o in f.options:
      <label class="pick"><input type="checkbox" name="pick.{{f.name}}" value="{{o}}"> {{o}}</label>
%     end
    </fieldset>
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

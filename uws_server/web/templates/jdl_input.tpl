<div class="ef{{' wide' if get('wide') else ''}}{{' has-error' if errors.get(key) else ''}}">
  <label for="e-{{key}}">{{label}}</label>
% if kind == 'textarea':
  <textarea id="e-{{key}}" name="{{key}}" rows="{{get('rows', 2)}}" class="{{get('cls', '')}}" spellcheck="false">{{value}}</textarea>
% elif kind == 'select':
  <select id="e-{{key}}" name="{{key}}">
%   for o in choices:
    <option value="{{o}}" {{'selected' if o == value else ''}}>{{o}}</option>
%   end
  </select>
% elif kind == 'checkbox':
  <input type="checkbox" id="e-{{key}}" name="{{key}}" value="true" {{'checked' if value else ''}}>
% else:
  <input type="text" id="e-{{key}}" name="{{key}}" value="{{value}}" placeholder="{{get('ph', '')}}" spellcheck="false">
% end
  <span class="field-error" data-for="{{key}}">{{'; '.join(errors.get(key, []))}}</span>
</div>

% p = group + '[' + str(i) + '].'
% kind_label = {'parameters': 'Parameter', 'used': 'Input (used entity)', 'generated': 'Output (generated entity)'}[group]
<fieldset class="row" data-group="{{group}}">
  <legend>{{kind_label}} <button type="button" class="linkish remove" data-remove="1">remove</button></legend>
  <div class="efgrid">
% if group == 'parameters':
%   include('jdl_input.tpl', label='Name', key=p + 'name', value=row.get('name', ''), kind='text', ph='e.g. emin')
%   include('jdl_input.tpl', label='Datatype', key=p + 'datatype', value=row.get('datatype', 'xs:string'), kind='select', choices=datatypes)
%   include('jdl_input.tpl', label='Default', key=p + 'default', value=row.get('default', ''), kind='text')
%   include('jdl_input.tpl', label='Required', key=p + 'required', value=row.get('required', True), kind='checkbox')
%   include('jdl_input.tpl', label='Unit', key=p + 'unit', value=row.get('unit', ''), kind='text', ph='e.g. TeV')
%   include('jdl_input.tpl', label='Min', key=p + 'min', value=row.get('min', ''), kind='text')
%   include('jdl_input.tpl', label='Max', key=p + 'max', value=row.get('max', ''), kind='text')
%   include('jdl_input.tpl', label='Options (one a line)', key=p + 'options', value=row.get('options', ''), kind='textarea')
%   include('jdl_input.tpl', label='Description', key=p + 'description', value=row.get('description', ''), kind='textarea', wide=True)
%   more = [k for k in ('arraysize', 'ucd', 'utype') if errors.get(p + k) or row.get(k)]
  </div>
  <details class="more" {{'open' if more else ''}}><summary>More</summary>
  <div class="efgrid">
%   include('jdl_input.tpl', label='Array size', key=p + 'arraysize', value=row.get('arraysize', ''), kind='text', ph='e.g. *')
%   include('jdl_input.tpl', label='UCD', key=p + 'ucd', value=row.get('ucd', ''), kind='text')
%   include('jdl_input.tpl', label='Utype', key=p + 'utype', value=row.get('utype', ''), kind='text')
  </div>
  </details>
% else:
%   include('jdl_input.tpl', label='Name', key=p + 'name', value=row.get('name', ''), kind='text', ph='input' if group == 'used' else 'e.g. output')
%   include('jdl_input.tpl', label='File name' if group == 'generated' else 'Default file name', key=p + 'default', value=row.get('default', ''), kind='text', ph='e.g. output.txt')
%   include('jdl_input.tpl', label='Content type', key=p + 'content_type', value=row.get('content_type', ''), kind='text', ph='e.g. text/plain')
%   include('jdl_input.tpl', label='Multiplicity', key=p + 'multiplicity', value=row.get('multiplicity', ''), kind='text', ph='1, *, 0..1')
%   include('jdl_input.tpl', label='Role', key=p + 'role', value=row.get('role', ''), kind='text')
%   include('jdl_input.tpl', label='URL', key=p + 'url', value=row.get('url', ''), kind='text', ph='file://$ID or https://…$ID')
%   include('jdl_input.tpl', label='Description', key=p + 'description', value=row.get('description', ''), kind='textarea', wide=True)
  </div>
% end
</fieldset>

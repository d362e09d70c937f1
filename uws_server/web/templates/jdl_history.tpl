% rebase('base.tpl', page='history')
<p class="crumbs"><a href="/ui/jdl">Job definitions</a> ›
% if current:
<a href="/ui/jdl/{{q(name)}}/edit">{{name}}</a> ›
% end
</p>
<h1>History of {{name}}</h1>
% if not entries:
<p class="muted" id="no-history">No earlier versions.</p>
% else:
<table class="list" id="history">
<thead><tr><th>#</th><th>Version</th><th>Replaced at</th><th>Size</th><th></th></tr></thead>
<tbody>
%   for e in entries:
<tr data-stamp="{{e.timestamp}}"><td>#{{e.number}}</td><td>{{e.version}}</td><td><time datetime="{{e.timestamp}}">{{e.when}}</time></td><td>{{human_size(e.size)}}</td>
  <td><a href="/ui/jdl/{{q(name)}}/history/{{q(e.timestamp)}}">view</a> ·
      <a href="/ui/jdl/{{q(name)}}/edit?version={{q(e.timestamp)}}">open in editor</a></td></tr>
%     if e.against:
<tr class="diff-row"><td></td><td colspan="4">
  <details class="diff" id="diff-{{e.number}}"><summary>Changes from #{{e.number}} to {{e.against}} ({{len(e.diff)}} diff lines{{', cut' if e.diff_cut else ''}})</summary>
  <pre class="diff">
%       for line in e.diff:
%         cls = 'hunk' if line.startswith('@@') else ('add' if line.startswith('+') and not line.startswith('+++') else ('del' if line.startswith('-') and not line.startswith('---') else ''))
<span class="{{cls}}">{{line}}</span>
%       end
</pre>
%       if not e.diff:
  <p class="muted small">identical</p>
%       end
  </details>
</td></tr>
%     end
%   end
</tbody>
</table>
% end

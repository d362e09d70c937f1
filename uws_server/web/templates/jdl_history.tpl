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
<thead><tr><th>Replaced at (UTC)</th><th>Size</th><th></th></tr></thead>
<tbody>
%   for e in entries:
<tr><td>{{e.timestamp}}</td><td>{{human_size(e.size)}}</td>
  <td><a href="/ui/jdl/{{q(name)}}/history/{{q(e.timestamp)}}">view</a> ·
      <a href="/ui/jdl/{{q(name)}}/edit?version={{q(e.timestamp)}}">open in editor</a></td></tr>
%   end
</tbody>
</table>
% end

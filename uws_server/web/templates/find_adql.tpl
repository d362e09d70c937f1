% rebase('base.tpl', page='find')
<p class="crumbs"><a href="/ui/find">Find data</a> ›</p>
<h1>ADQL query</h1>
<form method="get" action="/ui/find/adql" id="adql-form" class="card stack">
  <textarea class="code" name="query" id="adql-query" rows="5" spellcheck="false">{{query}}</textarea>
  <div class="buttons">
    <label class="muted small" for="adql-maxrec">at most</label>
    <input type="number" id="adql-maxrec" name="maxrec" value="{{maxrec}}" min="1" max="1000">
    <span class="muted small">rows</span>
    <button type="submit" class="primary" id="adql-run">Run query</button>
  </div>
</form>
% if error:
<p class="error-box" id="adql-error" role="alert">{{error}}</p>
% elif columns:
<p class="muted" id="adql-count">{{len(rows)}} row{{'' if len(rows) == 1 else 's'}}{{' (the limit: there are more)' if overflow else ''}}</p>
<div class="table-wrap">
<table class="list" id="adql-results">
  <thead><tr>
% for c in columns:
    <th>{{c}}</th>
% end
  </tr></thead>
  <tbody>
% for row in rows:
    <tr>
%   for value in row:
      <td>{{'' if value is None else value}}</td>
%   end
    </tr>
% end
  </tbody>
</table>
</div>
% end

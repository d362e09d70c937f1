% rebase('base.tpl', page='jobs')
<h1>{{'All jobs' if ctx.user.is_admin else 'My jobs'}}</h1>
<form method="get" action="/ui/jobs" class="filters" id="job-filter">
  <label>Phase
    <select name="phase" id="phase-filter">
      <option value="">any</option>
      <option value="active" {{'selected' if phase == 'active' else ''}}>pending or running</option>
% for p in phases:
      <option value="{{p}}" {{'selected' if phase.upper() == p else ''}}>{{p}}</option>
% end
    </select>
  </label>
  <label>Definition
    <select name="jobname" id="jobname-filter">
      <option value="">any</option>
% for n in names:
      <option value="{{n}}" {{'selected' if n == jobname else ''}}>{{n}}</option>
% end
    </select>
  </label>
  <label>Created from <input type="date" name="from" id="from-filter" value="{{lq.date_from}}"></label>
  <label>to <input type="date" name="to" id="to-filter" value="{{lq.date_to}}"></label>
  <label>Per page
    <select name="size" id="size-filter">
% for s in sizes:
      <option value="{{s}}" {{'selected' if s == lq.size else ''}}>{{s}}</option>
% end
    </select>
  </label>
  <input type="hidden" name="sort" value="{{lq.sort}}"><input type="hidden" name="order" value="{{lq.order}}">
  <button type="submit">Filter</button>
  <span class="live muted" id="jobs-live" aria-live="polite"></span>
</form>
<p class="pager" id="pager-top">
  <span id="jobs-count">{{page.total}} job{{'' if page.total == 1 else 's'}}{{(' · page %d of %d' % (page.page, page.pages)) if page.pages > 1 else ''}}</span>
% if page.page > 1:
  <a href="{{lq.link(page=1)}}" id="page-first">« first</a> <a href="{{lq.link(page=page.page - 1)}}" id="page-prev">‹ previous</a>
% end
% if page.page < page.pages:
  <a href="{{lq.link(page=page.page + 1)}}" id="page-next">next ›</a> <a href="{{lq.link(page=page.pages)}}" id="page-last">last »</a>
% end
</p>
<table class="jobs" id="jobs-table" data-query="{{back}}">
<thead><tr>
% for key, (label, _k) in sorts.items():
  <th><a href="{{lq.sort_link(key)}}" data-sort="{{key}}" class="{{('sorted ' + lq.order) if key == lq.sort else ''}}">{{label}}</a></th>
% end
  <th>Actions</th>
</tr></thead>
<tbody id="jobs-body">
% include('jobs_rows.tpl')
</tbody>
</table>
<p id="jobs-empty" class="muted{{' hidden' if jobs else ''}}">No jobs match.</p>

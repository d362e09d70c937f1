% rebase('base.tpl', page='find')
% def err(name):
%   return fq.errors.get(name, '')
% end
% def cls(name):
%   return ' has-error' if name in fq.errors else ''
% end
<h1>Find data</h1>
<p class="lead">Search the DL3 observations and your own products by position, time, energy
and processing, tick observations, and analyse them with a job.</p>
% if fq.errors:
<div class="error-box" id="find-errors" role="alert">
  <strong>Please correct the search:</strong>
  <ul>
%   for name, text in fq.errors.items():
    <li data-field="{{name}}">{{text}}</li>
%   end
  </ul>
</div>
% end
<form method="get" action="/ui/find" class="card findform" id="find-form" novalidate>
  <input type="hidden" name="sort" value="{{fq.sort}}">
  <input type="hidden" name="desc" value="{{'1' if fq.descending else ''}}">
  <input type="hidden" name="per" value="{{fq.per_page}}">
  <div class="fgrid">
    <fieldset class="fgroup">
      <legend>Cone search</legend>
      <div class="ff wide{{cls('target')}}">
        <label for="f-target">Target name</label>
        <input type="text" id="f-target" name="target" value="{{fq.raw['target']}}" list="target-names" placeholder="e.g. PKS 2155-304" autocomplete="off">
        <datalist id="target-names">
% for name, tra, tdec in targets:
          <option value="{{name}}" data-ra="{{'%.5f' % tra}}" data-dec="{{'%.5f' % tdec}}"></option>
% end
        </datalist>
        <p class="field-error" id="err-target">{{err('target')}}</p>
% if fq.resolved:
        <p class="resolved" id="target-resolved">{{fq.resolved}}</p>
% else:
        <p class="hint">resolved against the catalogue's own targets</p>
% end
      </div>
      <div class="ff{{cls('ra')}}">
        <label for="f-ra">RA <span class="unit">deg</span></label>
        <input type="text" inputmode="decimal" id="f-ra" name="ra" value="{{fq.raw['ra']}}" placeholder="0 – 360">
        <p class="field-error" id="err-ra">{{err('ra')}}</p>
      </div>
      <div class="ff{{cls('dec')}}">
        <label for="f-dec">Dec <span class="unit">deg</span></label>
        <input type="text" inputmode="decimal" id="f-dec" name="dec" value="{{fq.raw['dec']}}" placeholder="−90 – 90">
        <p class="field-error" id="err-dec">{{err('dec')}}</p>
      </div>
      <div class="ff{{cls('radius')}}">
        <label for="f-radius">Radius <span class="unit">deg</span></label>
        <input type="text" inputmode="decimal" id="f-radius" name="radius" value="{{fq.raw['radius']}}" placeholder="2">
        <p class="field-error" id="err-radius">{{err('radius')}}</p>
      </div>
    </fieldset>
    <fieldset class="fgroup">
      <legend>Time and energy</legend>
      <div class="ff{{cls('date_min')}}">
        <label for="f-date_min">From <span class="unit">UTC</span></label>
        <input type="text" id="f-date_min" name="date_min" value="{{fq.raw['date_min']}}" placeholder="YYYY-MM-DD">
        <p class="field-error" id="err-date_min">{{err('date_min')}}</p>
        <p class="hint">or an MJD</p>
      </div>
      <div class="ff{{cls('date_max')}}">
        <label for="f-date_max">To <span class="unit">UTC</span></label>
        <input type="text" id="f-date_max" name="date_max" value="{{fq.raw['date_max']}}" placeholder="YYYY-MM-DD">
        <p class="field-error" id="err-date_max">{{err('date_max')}}</p>
      </div>
      <div class="ff{{cls('energy_min')}}">
        <label for="f-energy_min">Energy from <span class="unit">TeV</span></label>
        <input type="text" inputmode="decimal" id="f-energy_min" name="energy_min" value="{{fq.raw['energy_min']}}" placeholder="e.g. 0.1">
        <p class="field-error" id="err-energy_min">{{err('energy_min')}}</p>
      </div>
      <div class="ff{{cls('energy_max')}}">
        <label for="f-energy_max">to <span class="unit">TeV</span></label>
        <input type="text" inputmode="decimal" id="f-energy_max" name="energy_max" value="{{fq.raw['energy_max']}}" placeholder="e.g. 100">
        <p class="field-error" id="err-energy_max">{{err('energy_max')}}</p>
      </div>
    </fieldset>
    <fieldset class="fgroup">
      <legend>Data set</legend>
      <div class="ff{{cls('type')}}">
        <label for="f-type">Product type</label>
        <select id="f-type" name="type">
          <option value="">any</option>
% for t in product_types:
          <option value="{{t}}" {{'selected' if fq.raw['type'] == t else ''}}>{{t}}</option>
% end
        </select>
        <p class="field-error" id="err-type">{{err('type')}}</p>
      </div>
      <div class="ff{{cls('level')}}">
        <label for="f-level">Calibration level</label>
        <select id="f-level" name="level">
          <option value="">any</option>
% for value, label in levels:
          <option value="{{value}}" {{'selected' if fq.raw['level'] == value else ''}}>{{label}}</option>
% end
        </select>
        <p class="field-error" id="err-level">{{err('level')}}</p>
      </div>
      <div class="ff">
        <label for="f-collection">Collection</label>
        <select id="f-collection" name="collection">
          <option value="">any</option>
% for c in collections:
          <option value="{{c}}" {{'selected' if fq.raw['collection'] == c else ''}}>{{c}}</option>
% end
% if fq.raw['collection'] and fq.raw['collection'] not in collections:
          <option value="{{fq.raw['collection']}}" selected>{{fq.raw['collection']}}</option>
% end
        </select>
      </div>
      <div class="ff{{cls('obs_ids')}}">
        <label for="f-obs_ids">Observation ids</label>
        <input type="text" id="f-obs_ids" name="obs_ids" value="{{fq.raw['obs_ids']}}" placeholder="e.g. 47802 47803">
        <p class="field-error" id="err-obs_ids">{{err('obs_ids')}}</p>
      </div>
    </fieldset>
  </div>
  <div class="buttons">
    <a href="/ui/find" class="button" id="find-reset">Reset</a>
    <button type="submit" name="search" value="1" class="primary" id="find-search">Search</button>
  </div>
</form>

% if not fq.errors:
<section id="results-section">
<form method="get" action="/ui/find/analyse" id="analyse-form">
% if fq.positioned:
  <input type="hidden" name="ra" value="{{'%.6g' % fq.ra}}">
  <input type="hidden" name="dec" value="{{'%.6g' % fq.dec}}">
% end
  <div class="results-head">
    <h2 id="results-count">{{total}} data set{{'' if total == 1 else 's'}}{{(' within %g° of RA %.3f°, Dec %+.3f°' % ((fq.radius if fq.radius is not None else 2.0), fq.ra, fq.dec)) if fq.positioned else ''}}</h2>
    <div class="analyse-bar" id="analyse-bar">
      <span class="muted" id="selected-count">0 selected</span>
      <button type="button" class="linkish small hidden" id="clear-selection">clear</button>
% if analyses:
      <span class="analyse-label">Analyse with</span>
% end
% for a in analyses:
      <button type="submit" name="jobname" value="{{a.name}}" class="analyse" id="analyse-{{a.name}}" title="{{a.description}}">{{a.name}}</button>
% end
% if not analyses:
      <span class="muted">no job definition analyses observations</span>
% end
    </div>
  </div>
% if rows:
  <div class="table-wrap">
  <table class="list results" id="results">
    <thead>
      <tr>
        <th class="tick"><input type="checkbox" id="tick-all" title="tick every observation of this page" aria-label="tick all"></th>
% for key, label in (('obs_id', 'Obs id'), ('target', 'Target'), ('date', 'Date (UTC)'), ('livetime', 'Livetime'), ('zenith', 'Zenith'), ('offset', 'Offset'), ('type', 'Type'), ('collection', 'Collection')):
%   if key == 'offset' and not fq.positioned:
        <th class="num">Offset</th>
%   else:
        <th class="{{'num' if key in ('livetime', 'zenith', 'offset') else ''}}{{' sorted' if fq.sort == key else ''}}"><a href="{{fq.sort_link(key)}}" data-sort="{{key}}">{{label}}{{(' ▼' if fq.descending else ' ▲') if fq.sort == key else ''}}</a></th>
%   end
% end
        <th>Links</th>
      </tr>
    </thead>
    <tbody id="results-body">
% for r in rows:
      <tr data-did="{{r['did']}}" data-obs-id="{{r['obs_id']}}" class="{{'mine' if r['mine'] else ''}}">
        <td class="tick">
%   if r['tickable']:
          <input type="checkbox" name="obs_id" value="{{r['obs_id']}}" aria-label="tick observation {{r['obs_id']}}">
%   end
        </td>
        <td class="obsid"><code>{{r['obs_id']}}</code></td>
        <td>{{r['target']}}</td>
        <td class="nowrap">{{r['date']}}</td>
        <td class="num nowrap">{{r['livetime']}}</td>
        <td class="num">{{r['zenith'] + '°' if r['zenith'] else ''}}</td>
        <td class="num offset">{{r['offset']}}</td>
        <td class="nowrap"><span class="tag">{{r['type']}}</span> <span class="muted small">{{('L' + r['level']) if r['level'] else ''}}</span></td>
        <td class="small">{{r['collection']}}{{' (yours)' if r['mine'] else ''}}</td>
        <td class="links nowrap">
          <a href="{{r['download']}}" class="dl" title="download the file">download</a>
          <a href="{{r['preview']}}" class="pv" target="_blank" rel="noopener" title="quick-look image">preview</a>
%   if r['provenance']:
          <a href="{{r['provenance']}}" class="pg" target="_blank" rel="noopener" title="provenance graph (SVG)">provenance</a>
%   end
          <a href="{{r['datalink']}}" class="dlk" title="every link of this data set (DataLink)">DataLink</a>
        </td>
      </tr>
% end
    </tbody>
  </table>
  </div>
% elif not fq.errors:
  <p class="card muted" id="no-results">No data set matches this search{{' (or none you may see)' if fq.asked else ''}}.</p>
% end
</form>
% if pages > 1 or total > 10:
<nav class="pager" id="pager">
% if fq.page > 1:
  <a href="{{fq.link(page=fq.page - 1)}}" rel="prev" id="page-prev">‹ Previous</a>
% end
  <span id="page-info">page {{fq.page}} of {{pages}}</span>
% if fq.page < pages:
  <a href="{{fq.link(page=fq.page + 1)}}" rel="next" id="page-next">Next ›</a>
% end
  <span class="per">rows per page:
% for n in page_sizes:
%   if n == fq.per_page:
    <strong>{{n}}</strong>
%   else:
    <a href="{{fq.link(per=n, page=1)}}">{{n}}</a>
%   end
% end
  </span>
</nav>
% end
</section>
% end

<details class="card adql" id="adql" {{'open' if not tap else ''}}>
  <summary>ADQL for experts (TAP)</summary>
% if tap:
  <form method="get" action="/ui/find/adql" id="adql-form" class="stack">
    <textarea class="code" name="query" id="adql-query" rows="4" spellcheck="false">{{adql}}</textarea>
    <div class="buttons">
      <label class="muted small" for="adql-maxrec">at most</label>
      <input type="number" id="adql-maxrec" name="maxrec" value="100" min="1" max="10000">
      <span class="muted small">rows</span>
      <button type="submit" class="primary" id="adql-run">Run query</button>
    </div>
  </form>
  <p class="muted small">Queries <code>ivoa.obscore</code> through this service's TAP endpoint
    (<code>/tap/sync</code>) as you, so you see exactly the rows the search above shows you.
    TOPCAT or pyvo can use <code>/tap</code> directly.</p>
% else:
  <p class="muted" id="adql-unavailable">The TAP service (<code>/tap</code>) is not available on this server,
    so ADQL queries cannot be run from here. The search form above covers the same catalogue.</p>
% end
</details>

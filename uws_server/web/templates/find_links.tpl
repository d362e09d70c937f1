% rebase('base.tpl', page='find')
<p class="crumbs"><a href="/ui/find">Find data</a> ›</p>
<h1>Data set <code>{{r['obs_id']}}</code></h1>
<p class="lead">{{r['target']}} · {{r['type']}}{{(' · level ' + r['level']) if r['level'] else ''}} · {{r['collection']}}{{' (yours)' if r['mine'] else ''}}</p>
<div class="grid">
<section class="card" id="dataset-links">
  <h2>Links</h2>
  <ul class="dl-links">
    <li><span class="sem">#this</span><a href="{{r['download']}}" id="link-download">download the file</a><span class="muted small">{{r['format']}}{{(', ' + human_size(r['size'] * 1024)) if r['size'] else ''}}</span></li>
% if has_preview:
    <li><span class="sem">#preview</span><a href="{{r['preview']}}" id="link-preview">quick-look image</a></li>
% end
% if has_provenance:
    <li><span class="sem">#progenitor</span><a href="{{r['provenance']}}" id="link-provenance">provenance graph (SVG)</a></li>
% end
% if r['job_url']:
    <li><span class="sem">job</span><a href="{{r['job_url']}}" id="link-job">the job that made it</a></li>
% end
    <li><span class="sem">DataLink</span><a href="{{r['datalink_raw']}}" id="link-datalink">the DataLink document (VOTable)</a><span class="muted small">for TOPCAT, pyvo…</span></li>
  </ul>
% if r['tickable'] and analyses:
  <h3>Analyse</h3>
  <form method="get" action="/ui/find/analyse" class="inline">
    <input type="hidden" name="obs_id" value="{{r['obs_id']}}">
%   for a in analyses:
    <button type="submit" name="jobname" value="{{a.name}}" title="{{a.description}}">{{a.name}}</button>
%   end
  </form>
% end
% if has_preview:
  <p><img src="{{r['preview']}}" alt="preview of {{r['obs_id']}}" class="preview"></p>
% end
</section>
<section class="card">
  <h2>ObsCore</h2>
  <table class="kv dataset" id="dataset-columns">
% for c, value in columns:
%   if value is not None and value != '':
    <tr><th title="{{c.description}}">{{c.name}}</th><td>{{(('%.6f' if c.unit == 'd' else '%.7g') % value) if isinstance(value, float) else value}}{{(' ' + c.unit) if c.unit else ''}}</td></tr>
%   end
% end
  </table>
</section>
</div>

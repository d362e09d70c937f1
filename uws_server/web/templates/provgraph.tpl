% rebase('base.tpl', page='job')
<p class="crumbs"><a href="/ui/jobs">My jobs</a> › <a href="{{base}}">Job {{job.job_id}}</a> ›</p>
<h1>Provenance of job <code>{{job.job_id}}</code> <span class="muted">({{job.jobname}})</span></h1>
<form method="get" action="{{base}}/provenance-graph" class="filters" id="cross-job">
  <label>Direction <select name="direction">
    <option value="BACK" {{'selected' if direction == 'BACK' else ''}}>BACK (what it came from)</option>
    <option value="FORWARD" {{'selected' if direction == 'FORWARD' else ''}}>FORWARD (what was made from it)</option>
  </select></label>
  <label>Depth (jobs) <select name="depth">
% for d in depths:
    <option value="{{d}}" {{'selected' if d == depth else ''}}>{{d}}</option>
% end
  </select></label>
  <button type="submit">Show</button>
  <a href="{{svg_url}}" class="small" id="chain-svg">SVG (ProvSAP PROV-SVG)</a>
</form>
<section class="card" id="chain">
% include('provgraph_view.tpl', graph=graph, src=graph.data_uri, map_name='chain', img_id='chain-graph', alt='provenance chain of job ' + job.job_id)
<p class="muted small">{{len(graph.areas)}} linked nodes · boxes are jobs (their parameters inside), notes are files.</p>
</section>

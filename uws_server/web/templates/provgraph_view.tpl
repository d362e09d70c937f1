<div class="graph-view" data-width="{{graph.width if graph else 0}}" data-height="{{graph.height if graph else 0}}">
  <div class="graph-tools">
    <button type="button" data-zoom="in" title="zoom in">+</button>
    <button type="button" data-zoom="out" title="zoom out">−</button>
    <button type="button" data-zoom="fit" title="fit to width">fit</button>
    <button type="button" data-zoom="one" title="actual size">1:1</button>
    <span class="muted small">drag to move, wheel to zoom; click a job or file to open it</span>
  </div>
  <div class="graph-port">
    <div class="graph-stage">
      <img src="{{src}}" alt="{{alt}}" class="provenance-graph" id="{{img_id}}" usemap="#{{map_name}}"
% if graph and graph.width:
           width="{{graph.width}}" height="{{graph.height}}"
% end
           draggable="false">
% if graph:
      <map name="{{map_name}}">
%   for a in graph.areas:
        <area shape="rect" coords="{{a.coords}}" href="{{a.href}}" title="{{a.title}}" alt="{{a.title}}">
%   end
      </map>
% end
    </div>
  </div>
</div>

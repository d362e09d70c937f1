// Provenance pictures: fit to width, zoom (buttons, wheel) and pan (drag).
// The picture is an <img> with an image map; a CSS transform moves both together.
// No library, nothing fetched: the picture and its map come with the page.
"use strict";

function graphView(view) {
  const port = view.querySelector(".graph-port");
  const stage = view.querySelector(".graph-stage");
  const img = stage.querySelector("img");
  let width = Number(view.dataset.width) || 0;
  let height = Number(view.dataset.height) || 0;
  let scale = 1;
  let x = 0;
  let y = 0;
  let dragged = false;

  function apply() {
    stage.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")";
  }

  function fit() {
    if (!width || !height) return;
    const room = port.clientWidth || width;
    scale = Math.min(1.25, room / width);
    // a tall chain makes the page longer (up to three windows), the rest by dragging
    const h = Math.max(160, Math.min(height * scale, window.innerHeight * 3));
    port.style.height = h + "px";
    x = Math.max(0, (room - width * scale) / 2);
    y = 0;
    apply();
  }

  function zoom(factor, cx, cy) {
    const next = Math.min(4, Math.max(0.1, scale * factor));
    if (cx === undefined) {
      cx = port.clientWidth / 2;
      cy = port.clientHeight / 2;
    }
    x = cx - ((cx - x) * next) / scale;
    y = cy - ((cy - y) * next) / scale;
    scale = next;
    apply();
  }

  view.querySelectorAll("[data-zoom]").forEach((b) =>
    b.addEventListener("click", () => {
      const what = b.dataset.zoom;
      if (what === "in") zoom(1.25);
      else if (what === "out") zoom(0.8);
      else if (what === "one") {
        scale = 1;
        x = 0;
        y = 0;
        apply();
      } else fit();
    })
  );

  port.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const r = port.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
    },
    { passive: false }
  );

  let start = null;
  port.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    start = { px: e.clientX, py: e.clientY, x, y };
    dragged = false;
  });
  window.addEventListener("pointermove", (e) => {
    if (!start) return;
    const dx = e.clientX - start.px;
    const dy = e.clientY - start.py;
    if (Math.abs(dx) + Math.abs(dy) > 4) dragged = true;
    if (dragged) {
      x = start.x + dx;
      y = start.y + dy;
      apply();
    }
  });
  window.addEventListener("pointerup", () => {
    start = null;
  });
  // a drag that ends on a node is not a click on it
  stage.addEventListener(
    "click",
    (e) => {
      if (dragged) {
        e.preventDefault();
        dragged = false;
      }
    },
    true
  );

  function ready() {
    if (!width || !height) {
      width = img.naturalWidth;
      height = img.naturalHeight;
    }
    fit();
  }
  if (img.complete) ready();
  else img.addEventListener("load", ready);
  window.addEventListener("resize", fit);
  view.classList.add("live");
}

function initGraphs(root) {
  root.querySelectorAll(".graph-view:not(.live)").forEach(graphView);
}

document.addEventListener("DOMContentLoaded", () => {
  initGraphs(document);
  // the job page replaces its details when the job changes: set up new pictures
  const details = document.getElementById("details");
  if (details) new MutationObserver(() => initGraphs(details)).observe(details, { childList: true });
});

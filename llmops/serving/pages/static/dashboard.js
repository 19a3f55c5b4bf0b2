// Dashboard charts: requests and thumbs-up rate per time bucket, one line per variant,
// drawn as SVG from /v1/dashboard/series. Names from the log are set as textContent only.
"use strict";
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 180, L = 40, R = 10, T = 10, B = 24;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtTime(t, bucket) {
    const d = new Date(t * 1000);
    const iso = d.toISOString();
    return bucket >= 86400 ? iso.slice(5, 10) : iso.slice(5, 16).replace("T", " ");
  }

  function draw(holder, kind, series, start, end, bucket) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    const names = Object.keys(series).sort();
    let max = kind === "rate" ? 1 : 0;
    if (kind !== "rate") {
      for (const n of names) for (const p of series[n]) max = Math.max(max, p.requests);
      max = Math.max(1, max);
    }
    const x = (t) => L + ((t - start) / Math.max(1, end - start)) * (W - L - R);
    const y = (v) => H - B - (v / max) * (H - T - B);
    svg.appendChild(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    svg.appendChild(el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    const top = kind === "rate" ? "100%" : String(max);
    svg.appendChild(el("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, top));
    svg.appendChild(el("text", { x: L - 4, y: H - B, "text-anchor": "end" }, kind === "rate" ? "0%" : "0"));
    svg.appendChild(el("text", { x: L, y: H - 6 }, fmtTime(start, bucket)));
    svg.appendChild(el("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmtTime(end, bucket)));
    let drawn = 0;
    names.forEach((name, i) => {
      const pts = [];
      for (const p of series[name]) {
        const votes = p.up + p.down;
        if (kind === "rate" && votes === 0) continue;
        const v = kind === "rate" ? p.up / votes : p.requests;
        pts.push([x(Math.min(end, p.t + bucket / 2)), y(v), p, v]);
      }
      if (!pts.length) return;
      drawn += 1;
      const cls = `s${i % 4}`;
      if (pts.length > 1) {
        svg.appendChild(el("polyline", { points: pts.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" "), class: cls }));
      }
      for (const [px, py, p, v] of pts) {
        const dot = el("circle", { cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5, class: cls });
        const label = kind === "rate" ? `${(v * 100).toFixed(1)}% of ${p.up + p.down} votes` : `${v} requests`;
        dot.appendChild(el("title", {}, `${name} · ${fmtTime(p.t, bucket)} · ${label}`));
        svg.appendChild(dot);
      }
    });
    if (!drawn) {
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" },
        kind === "rate" ? "no votes in this window" : "no requests in this window"));
    }
    holder.replaceChildren(svg);
    const legend = document.createElement("div");
    legend.className = "legend";
    names.forEach((name, i) => {
      const item = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = `sw s${i % 4}`;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(name));
      legend.appendChild(item);
    });
    holder.appendChild(legend);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const info = document.getElementById("series");
    const charts = document.querySelectorAll(".charts");
    if (!info || !charts.length) return;
    const q = new URLSearchParams();
    if (info.dataset.since) q.set("since", info.dataset.since);
    if (info.dataset.until) q.set("until", info.dataset.until);
    const resp = await fetch(`/v1/dashboard/series?${q}`, { credentials: "same-origin" });
    if (!resp.ok) return;
    const body = await resp.json();
    for (const box of charts) {
      const series = {};
      for (const p of body.data) {
        if (p.endpoint !== box.dataset.endpoint) continue;
        (series[p.variant || "–"] = series[p.variant || "–"] || []).push(p);
      }
      for (const holder of box.querySelectorAll(".chart")) {
        draw(holder, holder.dataset.kind, series, body.since, body.until, body.bucket_s);
      }
      box.dataset.drawn = "true";
    }
  });
})();

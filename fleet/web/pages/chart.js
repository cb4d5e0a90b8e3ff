// Small inline SVG charts, drawn here (no chart library, nothing from a CDN): a line
// chart of time series (one line per network target) and a bar chart of percentages.
// The SVG scales with its box (viewBox), so one drawing fits a phone and a desktop.
"use strict";

const Chart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 220, LEFT = 56, RIGHT = 10, TOP = 14, BOTTOM = 30;
  const COLOURS = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f"];
  const hourFmt = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const step = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
    return 10 * step;
  }

  function number(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : String(+v.toFixed(2)); }

  // lines: [{name, points: [[ms, value], ...]}], over [fromMs, toMs]; title includes unit.
  function line(title, unit, lines, fromMs, toMs) {
    const values = lines.flatMap(l => l.points.map(p => p[1]));
    const top = niceMax(Math.max(0, ...values));
    const x = ms => LEFT + (ms - fromMs) / (toMs - fromMs) * (W - LEFT - RIGHT);
    const y = v => TOP + (1 - v / top) * (H - TOP - BOTTOM);
    const label = title + (unit ? " (" + unit + ")" : "");
    const node = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
                              "aria-label": label });
    node.append(svg("title", {}, label));
    for (const v of [0, top / 2, top]) {
      node.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }),
                  svg("text", { x: LEFT - 6, y: y(v) + 6, "text-anchor": "end" }, number(v)));
    }
    node.append(svg("text", { x: LEFT, y: H - 6 }, hourFmt.format(new Date(fromMs))),
                svg("text", { x: W - RIGHT, y: H - 6, "text-anchor": "end" },
                    hourFmt.format(new Date(toMs))));
    lines.forEach((l, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const pts = l.points.filter(p => p[0] >= fromMs && p[0] <= toMs);
      node.append(svg("polyline", { class: "series", "data-series": l.name, fill: "none",
        stroke: colour, "stroke-width": 2,
        points: pts.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ") }));
      // Few buckets (or one, which draws no line): a dot marks each.
      for (const p of pts.length <= 36 ? pts : []) {
        node.append(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, fill: colour }));
      }
    });
    return node;
  }

  // bars: [{name, value (0..1) or null}]; drawn as horizontal bars with the percentage.
  function bars(title, items) {
    const row = 30, height = TOP + items.length * row + 4;
    const node = svg("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", class: "chart bars",
                              "aria-label": title });
    node.append(svg("title", {}, title));
    const left = 210, width = W - left - 84;
    items.forEach((item, i) => {
      const yy = TOP + i * row;
      const name = item.name.length > 14 ? item.name.slice(0, 13) + "…" : item.name;
      node.append(svg("text", { x: left - 8, y: yy + 17, "text-anchor": "end" }, name),
                  svg("rect", { x: left, y: yy, width, height: 22, class: "track" }));
      if (item.value !== null) {
        node.append(svg("rect", { x: left, y: yy, width: width * item.value, height: 22,
                                  class: "bar" + (item.value < 0.95 ? " low" : "") }),
                    svg("text", { x: left + width + 6, y: yy + 17 },
                        (item.value * 100).toFixed(1) + "%"));
      } else {
        node.append(svg("text", { x: left + width + 6, y: yy + 17 }, "—"));
      }
    });
    return node;
  }

  return { line, bars };
})();

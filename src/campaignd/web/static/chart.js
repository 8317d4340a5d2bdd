// Line charts drawn as inline SVG: one viewBox, one polyline per series, labelled axes.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

export function lineChart(container, { title, series, unit }) {
  const width = 600, height = 200, pad = 36;
  const points = series.flatMap((s) => s.values);
  const max = Math.max(1, ...points.filter((v) => v !== null && !Number.isNaN(v)));
  const count = Math.max(2, ...series.map((s) => s.values.length));
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart" });
  svg.appendChild(el("title", {})).textContent = title;
  for (const fraction of [0, 0.5, 1]) {
    const y = height - pad - fraction * (height - 2 * pad);
    svg.appendChild(el("line", { x1: pad, x2: width - 8, y1: y, y2: y, class: "grid" }));
    const label = el("text", { x: 4, y: y + 4, class: "axis" });
    label.textContent = `${Math.round(max * fraction)}${unit || ""}`;
    svg.appendChild(label);
  }
  series.forEach((s, index) => {
    const coords = s.values
      .map((v, i) => (v === null ? null : [
        pad + (i * (width - pad - 8)) / (count - 1),
        height - pad - (v / max) * (height - 2 * pad),
      ]))
      .filter(Boolean)
      .map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`);
    svg.appendChild(el("polyline", {
      points: coords.join(" "), class: `line line-${index}`, "data-series": s.name,
      "data-points": coords.length,
    }));
    if (coords.length === 1) {  // a lone point draws no line: mark it
      const [x, y] = coords[0].split(",");
      svg.appendChild(el("circle", { cx: x, cy: y, r: 4, class: `dot line-${index}` }));
    }
  });
  const legend = document.createElement("p");
  legend.className = "legend";
  legend.innerHTML = series
    .map((s, i) => `<span class="key key-${i}"></span>${s.name}`)
    .join(" ");
  container.replaceChildren(svg, legend);
}

// A traffic campaign's two charts from its per-second points: rate, then latency.
export function trafficCharts(rateBox, latencyBox, points) {
  lineChart(rateBox, {
    title: "Achieved and target requests per minute",
    series: [
      { name: "achieved rpm", values: points.map((p) => p.rpm) },
      { name: "target rpm", values: points.map((p) => p.target_rpm) },
    ],
  });
  lineChart(latencyBox, {
    title: "Latency p50 and p99 (ms)", unit: " ms",
    series: [
      { name: "p50 ms", values: points.map((p) => p.p50_ms) },
      { name: "p99 ms", values: points.map((p) => p.p99_ms) },
    ],
  });
}

// A message campaign's sent and failed per bucket.
export function messageChart(box, points, per) {
  lineChart(box, {
    title: `Messages sent and failed per ${per}`,
    series: [
      { name: "sent", values: points.map((p) => p.sent) },
      { name: "failed", values: points.map((p) => p.failed) },
    ],
  });
}

// Line charts drawn as inline SVG at the box's own pixel width (labels stay readable on a
// phone), with a visible title, round value ticks, a time axis and an honest empty state.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// 0 .. a round number above max, in 2-5 steps; whole steps for counts.
export function ticks(max, integer) {
  if (!(max > 0)) return [];
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 2.5, 5, 10].map((f) => f * power).find((s) => s >= rough);
  if (integer) step = Math.max(1, Math.ceil(step));
  const top = Math.ceil(max / step) * step;
  const values = [];
  for (let v = 0; v <= top + step / 2; v += step) values.push(Number(v.toPrecision(12)));
  return values;
}

function short(value) {
  if (value >= 1_000_000) return `${(value / 1_000_000).toPrecision(3).replace(/\.?0+$/, "")}M`;
  if (value >= 10_000) return `${(value / 1000).toPrecision(3).replace(/\.?0+$/, "")}k`;
  return String(Number(value.toPrecision(6)));
}

function clock(at) {
  return new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function lineChart(container, { title, series, unit = "", times = [], integer = false, note }) {
  const width = Math.max(280, Math.round(container.clientWidth || 600) - 16);
  const height = width < 420 ? 190 : 220;
  const left = 48, right = 12, top = 10, bottom = 30;
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
  const heading = document.createElement("h3");
  heading.className = "chart-title";
  heading.textContent = title;
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart",
  });
  svg.appendChild(el("title", {})).textContent = title;
  const explain = note ? Object.assign(document.createElement("p"), { className: "hint", textContent: note }) : null;
  const plotW = width - left - right, plotH = height - top - bottom;
  svg.appendChild(el("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: "axis-line" }));
  if (!values.length) {
    const empty = el("text", { x: left + plotW / 2, y: top + plotH / 2, class: "empty", "text-anchor": "middle" });
    empty.textContent = "No data yet";
    svg.appendChild(empty);
    container.replaceChildren(heading, svg, ...(explain ? [explain] : []));
    container.dataset.empty = "true";
    return;
  }
  delete container.dataset.empty;
  const marks = ticks(Math.max(...values), integer);
  const max = marks.length ? marks[marks.length - 1] : 1;
  const safeMax = max > 0 ? max : 1;
  for (const mark of (marks.length ? marks : [0])) {
    const y = top + plotH - (mark / safeMax) * plotH;
    svg.appendChild(el("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }));
    const label = el("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" });
    label.textContent = short(mark);
    svg.appendChild(label);
  }
  if (unit) {
    const label = el("text", { x: 4, y: top + 4, class: "axis unit" });
    label.textContent = unit;
    svg.appendChild(label);
  }
  const count = Math.max(2, ...series.map((s) => s.values.length));
  const xAt = (i) => left + (i * plotW) / (count - 1);
  if (times.length) {
    const spots = times.length === 1 ? [0] : [0, Math.floor((times.length - 1) / 2), times.length - 1];
    spots.forEach((i, n) => {
      const anchor = n === 0 ? "start" : n === spots.length - 1 ? "end" : "middle";
      const label = el("text", { x: xAt(i), y: height - 8, class: "axis time", "text-anchor": anchor });
      label.textContent = clock(times[i]);
      svg.appendChild(label);
    });
  }
  series.forEach((s, index) => {
    const coords = s.values
      .map((v, i) => (v === null || v === undefined ? null : [xAt(i), top + plotH - (v / safeMax) * plotH]))
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
  container.replaceChildren(heading, svg, legend);
}

const hasBusyUsers = (points) => points.some((p) => p.busy_users !== undefined && p.busy_users !== null);

// A traffic campaign's charts from its windows: rate, latency, busy users.
export function trafficCharts(boxes, points) {
  const times = points.map((p) => p.at);
  lineChart(boxes.rate, {
    title: "Requests per minute: achieved and target", times, integer: true,
    series: [
      { name: "achieved", values: points.map((p) => p.rpm) },
      { name: "target", values: points.map((p) => p.target_rpm) },
    ],
  });
  lineChart(boxes.latency, {
    title: "Latency p50 and p99 (ms)", times,
    series: [
      { name: "p50", values: points.map((p) => p.p50_ms) },
      { name: "p99", values: points.map((p) => p.p99_ms) },
    ],
  });
  if (boxes.users) {
    lineChart(boxes.users, {
      title: "Busy users (concurrency)", times, integer: true,
      note: hasBusyUsers(points) || !points.length ? null : "This service does not report busy users yet.",
      series: hasBusyUsers(points) ? [{ name: "busy users", values: points.map((p) => p.busy_users ?? null) }] : [],
    });
  }
}

// A message campaign's sent and failed per bucket.
export function messageChart(box, points, per) {
  lineChart(box, {
    title: `Messages sent and failed per ${per}`, integer: true,
    times: points.map((p) => p.at ?? p.bucket * 1000),
    series: [
      { name: "sent", values: points.map((p) => p.sent) },
      { name: "failed", values: points.map((p) => p.failed) },
    ],
  });
}

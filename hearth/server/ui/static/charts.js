// Plain SVG charts: bars or a line over equal time buckets, with a title and a text summary
// for screen readers.
import { number } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 480;
const HEIGHT = 160;
const PAD = { left: 48, right: 8, top: 10, bottom: 24 };

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function text(x, y, content, anchor = "start") {
  const node = svg("text", { x, y, "text-anchor": anchor, class: "axis" });
  node.textContent = content;
  return node;
}

function frame(label, values, start, bucketSeconds) {
  const max = Math.max(1, ...values);
  const total = values.reduce((sum, value) => sum + value, 0);
  const root = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    class: "chart",
    "aria-label": `${label}: total ${number(total)}, peak ${number(Math.max(0, ...values))} per bucket`,
  });
  const title = svg("title");
  title.textContent = label;
  root.appendChild(title);
  const bottom = HEIGHT - PAD.bottom;
  root.appendChild(svg("line", { x1: PAD.left, y1: bottom, x2: WIDTH - PAD.right, y2: bottom, class: "grid" }));
  root.appendChild(svg("line", { x1: PAD.left, y1: PAD.top, x2: WIDTH - PAD.right, y2: PAD.top, class: "grid" }));
  root.appendChild(text(PAD.left - 4, PAD.top + 4, number(max), "end"));
  root.appendChild(text(PAD.left - 4, bottom, "0", "end"));
  const begin = new Date(start);
  const end = new Date(begin.getTime() + bucketSeconds * values.length * 1000);
  root.appendChild(text(PAD.left, HEIGHT - 6, clock(begin, bucketSeconds)));
  root.appendChild(text(WIDTH - PAD.right, HEIGHT - 6, clock(end, bucketSeconds), "end"));
  return { root, max, bottom };
}

function clock(date, bucketSeconds) {
  // Windows of a day or more name the date too: 24 h apart is the same time of day.
  const iso = date.toISOString();
  return bucketSeconds >= 3600 ? `${iso.slice(5, 16).replace("T", " ")} UTC` : `${iso.slice(11, 16)} UTC`;
}

function x(index, count) {
  return PAD.left + ((WIDTH - PAD.left - PAD.right) * index) / count;
}

export function barChart(label, values, start, bucketSeconds) {
  const { root, max, bottom } = frame(label, values, start, bucketSeconds);
  const slot = (WIDTH - PAD.left - PAD.right) / values.length;
  values.forEach((value, index) => {
    if (!value) return;
    const height = ((bottom - PAD.top) * value) / max;
    const bar = svg("rect", {
      x: x(index, values.length) + 1, y: bottom - height, width: Math.max(1, slot - 2), height, class: "bar",
    });
    const tip = svg("title");
    tip.textContent = `${number(value)}`;
    bar.appendChild(tip);
    root.appendChild(bar);
  });
  return root;
}

export function lineChart(label, values, start, bucketSeconds) {
  const { root, max, bottom } = frame(label, values, start, bucketSeconds);
  const step = (WIDTH - PAD.left - PAD.right) / values.length;
  const points = values.map((value, index) => {
    const px = x(index, values.length) + step / 2;
    const py = bottom - ((bottom - PAD.top) * value) / max;
    return `${px.toFixed(1)},${py.toFixed(1)}`;
  });
  root.appendChild(svg("polyline", { points: points.join(" "), class: "line" }));
  return root;
}

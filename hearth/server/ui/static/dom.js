// DOM helpers. Text always goes in as text nodes (textContent), never as HTML: a key name or
// a model's answer that looks like markup is shown as the characters it is.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) append(node, child);
  return node;
}

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) child.forEach((item) => append(node, item));
  else if (child instanceof Node) node.appendChild(child);
  else node.appendChild(document.createTextNode(String(child)));
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function fill(tbody, rows, columns, empty) {
  clear(tbody);
  if (!rows.length) {
    tbody.appendChild(el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty)));
    return;
  }
  const fragment = document.createDocumentFragment();
  rows.forEach((cells) => fragment.appendChild(el("tr", {}, cells)));
  tbody.appendChild(fragment);
}

export function td(value, numeric = false) {
  return el("td", numeric ? { class: "num" } : {}, value);
}

export const number = (value) =>
  value === null || value === undefined ? "-" : Number(value).toLocaleString("en-US", { maximumFractionDigits: 1 });

export function bytes(value) {
  if (value === null || value === undefined) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let size = value;
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) {
    size /= 1000;
    unit += 1;
  }
  return `${size.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function seconds(value) {
  if (value === null || value === undefined) return "in use or kept";
  if (value < 60) return `${Math.round(value)} s`;
  if (value < 3600) return `${Math.round(value / 60)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

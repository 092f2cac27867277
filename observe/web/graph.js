// The tunnel graph: polls /api/graph every second and draws the VTEPs as nodes on a
// circle and the tunnels as edges, their width by rate and their colour by health (the
// server judges health: see observe/src/graph.rs). Plain DOM and SVG: the page works
// offline and loads nothing but what fastpath serves.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 800, HEIGHT = 600, RADIUS = 220, NODE = 18;
const POLL_MS = 1000;

// The VTEP whose inner endpoints are shown: a click, or ?vtep=ADDR in the address.
let selected = new URLSearchParams(window.location.search).get("vtep");
let latest = null;

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function human(bytesPerSecond) {
  if (bytesPerSecond === null || bytesPerSecond === undefined) return "";
  const bits = bytesPerSecond * 8;
  for (const [unit, scale] of [["Gbit/s", 1e9], ["Mbit/s", 1e6], ["kbit/s", 1e3]]) {
    if (bits >= scale) return (bits / scale).toFixed(1) + " " + unit;
  }
  return bits.toFixed(0) + " bit/s";
}

// Width grows with the log of the rate, so that a 10 Gbit/s tunnel and a 10 kbit/s one
// are both visible.
function width(bytesPerSecond) {
  if (!bytesPerSecond) return 2;
  return Math.min(16, 2 + Math.log10(1 + bytesPerSecond));
}

function positions(vteps) {
  const at = new Map();
  vteps.forEach((vtep, index) => {
    const angle = (2 * Math.PI * index) / Math.max(1, vteps.length) - Math.PI / 2;
    at.set(vtep.address, {
      x: WIDTH / 2 + RADIUS * Math.cos(angle),
      y: HEIGHT / 2 + RADIUS * Math.sin(angle),
    });
  });
  return at;
}

function draw(graph) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const at = positions(graph.vteps);
  // Parallel tunnels (several VNIs between the same VTEPs) are spread apart.
  const seen = new Map();
  for (const tunnel of graph.tunnels) {
    const from = at.get(tunnel.a), to = at.get(tunnel.b);
    const pair = tunnel.a + " " + tunnel.b;
    const rank = seen.get(pair) || 0;
    seen.set(pair, rank + 1);
    const offset = rank * 8;
    const line = element("line", {
      class: "tunnel " + tunnel.health,
      "data-a": tunnel.a,
      "data-b": tunnel.b,
      "data-kind": tunnel.kind,
      "data-vni": tunnel.vni,
      "data-health": tunnel.health,
      // Empty until the server has a sample a second old to take the rate against.
      "data-bytes-per-second": tunnel.bytes_per_second === null ? "" : tunnel.bytes_per_second,
      x1: from.x + offset, y1: from.y + offset, x2: to.x + offset, y2: to.y + offset,
      "stroke-width": width(tunnel.bytes_per_second),
    });
    line.appendChild(element("title", {},
      `${tunnel.kind} ${tunnel.vni} ${tunnel.a} <-> ${tunnel.b}: ${tunnel.health}, ` +
      `${tunnel.a_to_b.packets} / ${tunnel.b_to_a.packets} packets`));
    svg.appendChild(line);
    svg.appendChild(element("text", {
      class: "rate", x: (from.x + to.x) / 2 + offset, y: (from.y + to.y) / 2 + offset - 6,
    }, `${tunnel.kind} ${tunnel.vni} ${human(tunnel.bytes_per_second)}`));
  }
  for (const vtep of graph.vteps) {
    const where = at.get(vtep.address);
    const group = element("g", {
      class: "vtep" + (vtep.address === selected ? " selected" : ""),
      "data-vtep": vtep.address,
      transform: `translate(${where.x},${where.y})`,
    });
    group.appendChild(element("circle", { r: NODE }));
    group.appendChild(element("text", { y: NODE + 16 }, vtep.address));
    group.addEventListener("click", () => {
      selected = vtep.address;
      draw(latest);
    });
    svg.appendChild(group);
  }
  details(graph);
}

function details(graph) {
  const panel = document.getElementById("details");
  const vtep = graph.vteps.find((vtep) => vtep.address === selected);
  panel.replaceChildren();
  if (!vtep) {
    const none = document.createElement("p");
    none.textContent = "No VTEP selected.";
    panel.appendChild(none);
    return;
  }
  const title = document.createElement("h2");
  title.textContent = "VTEP " + vtep.address;
  const list = document.createElement("ul");
  list.id = "inner-endpoints";
  list.setAttribute("data-vtep", vtep.address);
  for (const inner of vtep.inner) {
    const item = document.createElement("li");
    item.className = "inner";
    item.textContent = inner;
    list.appendChild(item);
  }
  const heading = document.createElement("p");
  heading.textContent = vtep.inner.length + " inner endpoint(s):";
  panel.append(title, heading, list);
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/graph", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    latest = await response.json();
    draw(latest);
    status.textContent = `${latest.vteps.length} VTEPs, ${latest.tunnels.length} tunnels, ` +
      `health over ${latest.window_seconds.toFixed(0)} s` +
      (latest.errors.length ? "; not read: " + latest.errors.join("; ") : "");
    document.body.setAttribute("data-polls", Number(document.body.getAttribute("data-polls") || 0) + 1);
  } catch (error) {
    status.textContent = "cannot read /api/graph: " + error.message;
  }
  setTimeout(poll, POLL_MS);
}

poll();

// The dashboard page: draws the samples the server streams (/v1/stream) and sends the
// controls' changes to the control API (/v1/links, /v1/sites, /v1/strategy).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000, H = 560, HISTORY_S = 120;
const KIND_COLOUR = { datacenter: "#90caf9", outpost: "#ffb74d", localzone: "#4db6ac",
                      region: "#ce93d8", clinic: "#e0e0e0" };
const EVENT_COLOUR = { port: "#ff8a65", probe: "#ffd54f", strategy: "#ba68c8",
                       reroute: "#4fc3f7", control: "#aed581", switch: "#90a4ae" };
const CLIENT_COLOURS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176",
                        "#4db6ac", "#f06292", "#a1887f", "#90a4ae"];

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, parent = null) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
};

let box = null;          // the map's [west, south, east, north]
let positions = {};      // site -> [x, y] on the map
let latest = null;       // the last sample
let chart = null, chartClients = [];
const history = { t: [], rtt: {} };
let filledControls = false;

// -- map ------------------------------------------------------------------------------

function project(lon, lat) {
  const [west, south, east, north] = box;
  const k = Math.cos(((south + north) / 2) * Math.PI / 180);
  const sx = W / ((east - west) * k), sy = sx;
  return [(lon - west) * k * sx, (north - lat) * sy + (H - (north - south) * sy) / 2];
}

async function drawOutline() {
  const map = await (await fetch("/static/map.json")).json();
  box = map.box;
  const d = map.lines.map((line) => "M" + line.map(([lon, lat]) =>
    project(lon, lat).map((v) => v.toFixed(1)).join(",")).join("L")).join("");
  el("path", { d }, $("outline"));
  el("title", {}, $("outline")).textContent = map.source;
}

// Sites at (nearly) one place, such as a data center and its Outposts, sit on a ring around
// it; then sites still too close to read push each other apart a little.
const MIN_GAP = 30;
function layout(sites) {
  const groups = [];
  for (const s of sites) {
    const p = project(s.lon, s.lat);
    const g = groups.find((g) => Math.hypot(g.x - p[0], g.y - p[1]) < 16);
    if (g) g.sites.push(s); else groups.push({ x: p[0], y: p[1], sites: [s] });
  }
  positions = {};
  for (const g of groups) {
    const n = g.sites.length;
    g.sites.forEach((s, i) => {
      const r = n > 1 ? 16 + 6 * n : 0, a = -Math.PI / 2 + (2 * Math.PI * i) / n;
      positions[s.name] = [g.x + r * Math.cos(a), g.y + r * Math.sin(a)];
    });
  }
  const names = Object.keys(positions);
  for (let round = 0; round < 60; round++) {
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const a = positions[names[i]], b = positions[names[j]];
        const dx = b[0] - a[0], dy = b[1] - a[1], d = Math.hypot(dx, dy) || 0.01;
        if (d >= MIN_GAP) continue;
        const push = (MIN_GAP - d) / 4;
        a[0] -= (dx / d) * push; a[1] -= (dy / d) * push;
        b[0] += (dx / d) * push; b[1] += (dy / d) * push;
      }
    }
  }
}

function delayColour(ms) {
  const stops = ["#2ecc71", "#f1c40f", "#e67e22", "#e74c3c", "#9b59b6"];
  const t = Math.min(1, Math.max(0, Math.log(Math.max(ms, 0.2) / 0.2) / Math.log(30 / 0.2)));
  const i = Math.min(stops.length - 2, Math.floor(t * (stops.length - 1)));
  const f = t * (stops.length - 1) - i;
  const a = hex(stops[i]), b = hex(stops[i + 1]);
  return `rgb(${a.map((v, j) => Math.round(v + (b[j] - v) * f)).join(",")})`;
}
const hex = (c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

function drawLinks(links, client) {
  const g = $("links");
  g.replaceChildren();
  const selected = $("link").value;
  const onPath = new Set((client ? client.path : []).slice(1).map((s, i) =>
    [client.path[i], s].sort().join("|")));
  for (const l of links) {
    const [x1, y1] = positions[l.a], [x2, y2] = positions[l.b];
    const down = !l.up || l.controller_up === false;
    const width = 2 + Math.min(6, Math.log10(1 + l.traffic_mbit) * 2.5);
    const line = el("line", { x1, y1, x2, y2, class: "link" + (down ? " down" : "") +
      (l.name === selected ? " selected" : ""), stroke: delayColour(l.delay_ms),
      "stroke-width": width, "data-link": l.name }, g);
    el("title", {}, line).textContent =
      `${l.name}\nconfigured ${fmt(l.configured.delay_ms, 3)} ms, set ${fmt(l.delay_ms, 3)} ms, ` +
      `measured ${fmt(l.measured_ms, 3)} ms\nloss ${fmt(l.loss_pct, 1)} %, jitter ` +
      `${fmt(l.jitter_ms, 2)} ms, ${fmt(l.traffic_mbit, 3)} Mbit/s` +
      (down ? `\nDOWN (${l.up ? "" : "ports down "}${(l.down_by || []).join(", ")})` : "");
    line.addEventListener("click", () => selectLink(l.name));
  }
  drawLabels(links, g, (l) => l.name === selected || onPath.has([l.a, l.b].sort().join("|")));
}

// Labels where they fit: the selected link and the chosen client's path first, then the
// longest links; each at the first point along its line where it overlaps no other label.
function drawLabels(links, g, first) {
  const placed = [];
  const order = links.slice().sort((p, q) => (first(q) - first(p)) || (length(q) - length(p)));
  for (const l of order) {
    if (!first(l) && length(l) < 120) continue;
    const text = `${fmt(l.configured.delay_ms, 1)}/${fmt(l.measured_ms, 1)} ms` +
      (l.traffic_mbit >= 0.01 ? ` · ${fmt(l.traffic_mbit, 2)} Mb/s` : "");
    const w = text.length * 5.6 + 4, h = 11;
    const [x1, y1] = positions[l.a], [x2, y2] = positions[l.b];
    for (const t of [0.5, 0.38, 0.62, 0.28, 0.72]) {
      const x = x1 + (x2 - x1) * t, y = y1 + (y2 - y1) * t - 4;
      const box = [x - w / 2, y - h, x + w / 2, y + 2];
      if (placed.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3])) continue;
      placed.push(box);
      el("text", { x, y, class: "link-label", "text-anchor": "middle" }, g).textContent = text;
      break;
    }
  }
}
const length = (l) => Math.hypot(positions[l.b][0] - positions[l.a][0],
                                 positions[l.b][1] - positions[l.a][1]);

function drawSites(sites, endpointSite) {
  const g = $("sites");
  g.replaceChildren();
  for (const s of sites) {
    const [x, y] = positions[s.name];
    const node = el("g", { class: `site ${s.kind}` + (s.cut ? " cut" : "") +
      (s.name === endpointSite ? " endpoint" : ""), "data-site": s.name,
      transform: `translate(${x},${y})` }, g);
    const size = { datacenter: 8, outpost: 5, localzone: 5, region: 9, clinic: 4.5 }[s.kind];
    if (s.kind === "datacenter" || s.kind === "outpost") {
      el("rect", { x: -size, y: -size, width: 2 * size, height: 2 * size, rx: 2,
                   fill: KIND_COLOUR[s.kind] }, node);
    } else {
      el("circle", { r: size, fill: KIND_COLOUR[s.kind] }, node);
    }
    const text = el("text", { x: size + 3, y: 3 }, node);
    text.textContent = s.name;
    el("title", {}, node).textContent = `${s.label} (${s.kind})${s.cut ? " — CUT OFF" : ""}`;
    node.addEventListener("click", () => {
      $("site").value = s.name;
      const client = (latest.clients || []).find((c) => c.site === s.name);
      if (client) { $("client").value = client.host; render(); }
    });
  }
}

function drawRoute(client) {
  const g = $("route");
  g.replaceChildren();
  if (!client || client.path.length < 2) return;
  const d = "M" + client.path.map((s) => positions[s].map((v) => v.toFixed(1)).join(",")).join("L");
  el("path", { d }, g);
}

// -- panels ---------------------------------------------------------------------------

function fillControls(sample) {
  const options = (select, values, label = (v) => v) => {
    const keep = select.value;
    select.replaceChildren(...values.map((v) => new Option(label(v), v)));
    if (keep && values.includes(keep)) select.value = keep;
  };
  if (sample.strategy) {
    options($("strategy"), sample.strategy.available);
    $("strategy").value = sample.strategy.name;
  }
  options($("client"), sample.clients.map((c) => c.host),
          (h) => `${h} (${sample.clients.find((c) => c.host === h).site})`);
  options($("link"), sample.links.map((l) => l.name));
  options($("site"), sample.sites.map((s) => s.name));
  filledControls = true;
  fillLinkForm();
}

function fillLinkForm() {
  const l = latest && latest.links.find((x) => x.name === $("link").value);
  if (!l) return;
  $("link-delay").value = l.delay_ms;
  $("link-loss").value = l.loss_pct;
  $("link-jitter").value = l.jitter_ms;
}

function selectLink(name) {
  $("link").value = name;
  fillLinkForm();
  render();
}

function showClient(sample) {
  const c = sample.clients.find((x) => x.host === $("client").value) || sample.clients[0];
  if (!c) return null;
  $("client-endpoint").textContent = c.endpoint ? `${c.endpoint} @ ${c.endpoint_site}` : "none";
  $("client-path").textContent = c.path.length ? c.path.join(" › ") : "no path";
  $("client-path").dataset.path = c.path.join(">");
  $("client-model").textContent = c.model_rtt_ms === null ? "–" : `${fmt(c.model_rtt_ms, 3)} ms`;
  $("client-rtt").textContent = c.rtt_ms === null ? "no answer" : `${fmt(c.rtt_ms, 3)} ms`;
  return c;
}

function showLink(sample) {
  const l = sample.links.find((x) => x.name === $("link").value);
  if (!l) return;
  const state = !l.up ? "ports DOWN" : l.controller_up === false ?
    `down for the controller (${l.down_by.join(", ")})` : "up";
  $("link-state").textContent = `${state} · configured ${fmt(l.configured.delay_ms, 3)} ms · ` +
    `measured ${fmt(l.measured_ms, 3)} ms · ${fmt(l.traffic_mbit, 3)} Mbit/s`;
}

function updateChart(sample) {
  const hosts = sample.clients.map((c) => c.host);
  if (!chart || hosts.join() !== chartClients.join()) {
    chartClients = hosts;
    for (const h of hosts) history.rtt[h] = history.rtt[h] || [];
    const width = $("chart").clientWidth || 900;
    if (chart) chart.destroy();
    chart = new uPlot({
      width, height: 190, legend: { show: false },
      scales: { x: { time: true, range: (u, min, max) => [max - HISTORY_S, max] },
                y: { range: (u, min, max) => [0, Math.max(10, max * 1.15)] } },
      axes: [{ stroke: "#7d8b99", grid: { stroke: "#222c36" } },
             { stroke: "#7d8b99", grid: { stroke: "#222c36" }, label: "ms" }],
      series: [{}].concat(hosts.map((h, i) => ({
        label: h, stroke: CLIENT_COLOURS[i % CLIENT_COLOURS.length], width: 1.5,
        points: { show: false } }))),
    }, [history.t].concat(hosts.map((h) => history.rtt[h])), $("chart"));
  }
  history.t.push(sample.t);
  for (const c of sample.clients) history.rtt[c.host].push(c.rtt_ms);
  while (history.t.length && history.t[0] < sample.t - HISTORY_S) {
    history.t.shift();
    for (const h of hosts) history.rtt[h].shift();
  }
  chart.setData([history.t].concat(hosts.map((h) => history.rtt[h])));
  $("chart-legend").replaceChildren(...sample.clients.map((c, i) => {
    const item = document.createElement("span");
    item.className = "item" + (c.rtt_ms === null ? " lost" : "");
    item.style.setProperty("--colour", CLIENT_COLOURS[i % CLIENT_COLOURS.length]);
    item.textContent = `${c.host} → ${c.endpoint || "none"} ` +
      (c.rtt_ms === null ? "lost" : `${c.rtt_ms.toFixed(2)} ms`);
    item.title = `model ${fmt(c.model_rtt_ms, 3)} ms along ${c.path.join(" › ")}`;
    return item;
  }));
}

function showEvents(sample) {
  const svg = $("timeline");
  svg.replaceChildren();
  const end = sample.t, start = end - HISTORY_S;
  for (let s = 0; s <= HISTORY_S; s += 15) {
    const x = 1000 * (1 - s / HISTORY_S);
    el("line", { x1: x, x2: x, y1: 0, y2: 44, stroke: "#222c36" }, svg);
    el("text", { x: Math.min(x + 2, 975), y: 42 }, svg).textContent = s ? `-${s}s` : "now";
  }
  for (const e of sample.events.filter((e) => e.t >= start)) {
    const x = 1000 * (e.t - start) / HISTORY_S;
    const row = Object.keys(EVENT_COLOUR).indexOf(e.kind);
    const mark = el("rect", { x: x - 2, y: 3 + 5 * Math.max(row, 0), width: 4, height: 5,
                              fill: EVENT_COLOUR[e.kind] || "#fff" }, svg);
    el("title", {}, mark).textContent = e.text;
  }
  const list = $("events");
  list.replaceChildren(...sample.events.slice(-60).reverse().map((e) => {
    const li = document.createElement("li");
    const time = new Date(e.t * 1000).toLocaleTimeString([], { hour12: false });
    li.innerHTML = `<span class="time">${time}</span><span class="kind kind-${e.kind}">` +
                   `${e.kind}</span>`;
    li.appendChild(document.createTextNode(e.text));
    return li;
  }));
}

function render() {
  if (!latest || !box) return;
  const sample = latest;
  if (!filledControls) {
    fillControls(sample);
    $("topology-name").textContent = `· ${sample.topology}`;
  }
  if (sample.strategy && document.activeElement !== $("strategy")) {
    $("strategy-desc").textContent = sample.strategy.description;
  }
  const client = showClient(sample);
  drawLinks(sample.links, client);
  drawRoute(client);
  drawSites(sample.sites, client && client.endpoint_site);
  showLink(sample);
}

function onSample(sample) {
  const first = latest === null;
  latest = sample;
  if (first) layout(sample.sites);
  if (sample.strategy && $("strategy").options.length &&
      document.activeElement !== $("strategy") && !$("strategy").dataset.pending) {
    $("strategy").value = sample.strategy.name;
  }
  render();
  updateChart(sample);
  showEvents(sample);
  $("status").className = "status live";
  $("status").textContent = `live · ${new Date(sample.t * 1000).toLocaleTimeString([], { hour12: false })}`;
}

// -- controls -------------------------------------------------------------------------

async function put(path, body) {
  const msg = $("message");
  try {
    const resp = await fetch(`/v1/${path}`, { method: "PUT", body: JSON.stringify(body),
                                              headers: { "Content-Type": "application/json" } });
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || resp.status);
    msg.className = "message";
    msg.textContent = `${path}: ${JSON.stringify(body)}` +
      (data.apply_ms !== undefined ? ` applied in ${data.apply_ms.toFixed(1)} ms` : " done");
    return data;
  } catch (err) {
    msg.className = "message error";
    msg.textContent = `${path}: ${err.message}`;
    return null;
  }
}

function bind() {
  $("strategy-apply").addEventListener("click", async () => {
    $("strategy").dataset.pending = "1";
    await put("strategy", { name: $("strategy").value });
    delete $("strategy").dataset.pending;
  });
  $("client").addEventListener("change", render);
  $("link").addEventListener("change", () => { fillLinkForm(); render(); });
  $("link-apply").addEventListener("click", () => put(`links/${$("link").value}`, {
    delay_ms: Number($("link-delay").value), loss_pct: Number($("link-loss").value),
    jitter_ms: Number($("link-jitter").value) }));
  $("link-cut").addEventListener("click", () => put(`links/${$("link").value}`, { up: false }));
  $("link-restore").addEventListener("click", () => put(`links/${$("link").value}`, { up: true }));
  $("link-reset").addEventListener("click", async () => {
    const l = latest.links.find((x) => x.name === $("link").value);
    if (await put(`links/${l.name}`, { ...l.configured, rate_mbit: l.configured.rate_mbit ?? undefined })) {
      setTimeout(fillLinkForm, 300);
    }
  });
  $("site-cut").addEventListener("click", () => put(`sites/${$("site").value}`, { cut: true }));
  $("site-restore").addEventListener("click", () => put(`sites/${$("site").value}`, { cut: false }));
}

function connect() {
  const source = new EventSource("/v1/stream");
  source.addEventListener("sample", (e) => onSample(JSON.parse(e.data)));
  source.onerror = () => {
    $("status").className = "status lost";
    $("status").textContent = "no connection to the lab (retrying)";
  };
}

bind();
drawOutline().then(() => { render(); connect(); });

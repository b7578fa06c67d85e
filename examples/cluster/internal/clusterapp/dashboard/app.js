// Tandem cluster dashboard: polls /dashboard/api/state every second and
// draws the nodes, the buddy ring and the recent events. No build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const isUp = (st) => st === "up";
const isLive = (st) => st === "up" || st === "starting" || st === "stopping";
const color = (st) => isUp(st) ? "#1f9d55" : (st === "starting" || st === "stopping") ? "#d98e04" : "#d64545";

function bytes(n) {
  if (n < 1024) return n.toFixed(0) + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
  return (n / 1024 / 1024).toFixed(1) + " MB";
}
function num(n) { return Math.round(n).toLocaleString("en-US"); }
function micros(us) { return us >= 1000 ? (us / 1000).toFixed(1) + " ms" : us + " µs"; }
function since(t, now) {
  if (!t || t.startsWith("0001")) return "";
  const s = Math.max(0, Math.round((new Date(now) - new Date(t)) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
}
function hhmmss(t) {
  const d = new Date(t);
  return d.toLocaleTimeString("en-GB", {hour12: false}) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// ---- the ring ------------------------------------------------------------

function drawRing(nodes) {
  const svg = $("#ring");
  const cx = 180, cy = 160, R = 112, r = 34;
  const n = nodes.length;
  const pos = {};
  nodes.forEach((nd, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    pos[nd.id] = {x: cx + R * Math.cos(a), y: cy + R * Math.sin(a)};
  });
  let out = `<defs>
    <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path d="M0,0 L10,5 L0,10 z" fill="#2b59c3"/></marker>
  </defs>
  <circle cx="${cx}" cy="${cy}" r="${R}" fill="none" stroke="#e3e7ef" stroke-width="2" stroke-dasharray="4 5"/>`;
  for (const nd of nodes) {
    if (!isLive(nd.state) || !nd.buddy || !pos[nd.buddy]) continue;
    const a = pos[nd.id], b = pos[nd.buddy];
    // A curve bowed to the left of its direction, so that two nodes that
    // back each other up get two arcs; trimmed to the circles' edges.
    const dx = b.x - a.x, dy = b.y - a.y, l = Math.hypot(dx, dy) || 1;
    const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
    const bow = 0.22 * l;
    const qx = mx + (dy / l) * bow, qy = my - (dx / l) * bow;
    const trim = (p, q) => { const ex = q.x - p.x, ey = q.y - p.y, el = Math.hypot(ex, ey); return {x: p.x + ex / el * (r + 3), y: p.y + ey / el * (r + 3)}; };
    const s = trim(a, {x: qx, y: qy}), e = trim(b, {x: qx, y: qy});
    out += `<path class="edge" data-from="${esc(nd.id)}" data-to="${esc(nd.buddy)}" d="M${s.x},${s.y} Q${qx},${qy} ${e.x},${e.y}" fill="none" stroke="#2b59c3" stroke-width="2.5" marker-end="url(#arrow)" opacity="0.85"/>`;
    const lx = 0.25 * s.x + 0.5 * qx + 0.25 * e.x, ly = 0.25 * s.y + 0.5 * qy + 0.25 * e.y;
    out += `<text x="${lx}" y="${ly}" text-anchor="middle" dy="4" font-size="11" fill="#2b59c3" paint-order="stroke" stroke="#fff" stroke-width="4">${nd.sessions} ${nd.sessions === 1 ? "copy" : "copies"}</text>`;
  }
  for (const nd of nodes) {
    const p = pos[nd.id];
    const c = color(nd.state);
    const live = isLive(nd.state);
    out += `<g class="ring-node" data-node="${esc(nd.id)}" data-state="${esc(nd.state)}">
      <circle cx="${p.x}" cy="${p.y}" r="${r}" fill="${live ? "#fff" : "#fbeaea"}" stroke="${c}" stroke-width="4" ${live ? "" : 'stroke-dasharray="6 4"'}/>
      <text x="${p.x}" y="${p.y - 4}" text-anchor="middle" font-size="17" font-weight="700" fill="#1c2333">${esc(nd.id)}</text>
      <text x="${p.x}" y="${p.y + 13}" text-anchor="middle" font-size="11" fill="${live ? "#6b7385" : "#d64545"}">${live ? nd.sessions + " owned" : esc(nd.state)}</text>
    </g>`;
    if (!live) {
      out += `<text x="${p.x}" y="${p.y + r + 16}" text-anchor="middle" font-size="11" fill="#d64545">✕ out of the ring</text>`;
    } else {
      out += `<text x="${p.x}" y="${p.y + r + 16}" text-anchor="middle" font-size="11" fill="#6b7385">${nd.backups} backups held</text>`;
    }
  }
  svg.innerHTML = out;
}

// ---- node cards -------------------------------------------------------------

function spark(hist) {
  const w = 240, h = 34, n = 60;
  const vals = hist.slice(-n);
  const maxv = Math.max(1, ...vals);
  const step = w / (n - 1);
  const off = n - vals.length;
  const pts = vals.map((v, i) => `${((off + i) * step).toFixed(1)},${(h - 2 - (v / maxv) * (h - 14)).toFixed(1)}`);
  const area = pts.length ? `M${(off * step).toFixed(1)},${h} L${pts.join(" L")} L${w},${h} z` : "";
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">
    <path d="${area}" fill="#2b59c31f"/>
    <polyline points="${pts.join(" ")}" fill="none" stroke="#2b59c3" stroke-width="1.5"/>
    <text x="2" y="9" font-size="9" fill="#6b7385">records/s, 60 s (max ${num(maxv)})</text></svg>`;
}

const cards = {};

function card(nd) {
  let el = cards[nd.id];
  if (el) return el;
  el = document.createElement("div");
  el.id = "node-" + nd.id;
  el.innerHTML = `<div class="body"></div>
    <div class="actions">
      <button class="kill" id="kill-${esc(nd.id)}" title="SIGKILL: a crash, no handover">Kill</button>
      <button class="restart" id="restart-${esc(nd.id)}" title="SIGTERM (drain), then start again">Restart</button>
      <button class="stop" id="stop-${esc(nd.id)}" title="SIGTERM: hand sessions to the buddy, then exit">Stop</button>
    </div>`;
  el.querySelector(".kill").onclick = () => act("kill", nd.id);
  el.querySelector(".restart").onclick = () => act("restart", nd.id);
  el.querySelector(".stop").onclick = () => act("stop", nd.id);
  $("#nodes").appendChild(el);
  cards[nd.id] = el;
  return el;
}

function drawNodes(st) {
  for (const nd of st.nodes) {
    const el = card(nd);
    el.className = "node " + nd.state;
    el.dataset.state = nd.state;
    const live = isLive(nd.state);
    const ratio = nd.rawBytesPerSec > 0 ? (nd.wireBytesPerSec / nd.rawBytesPerSec * 100).toFixed(0) + "% (" + bytes(nd.rawBytesPerSec) + "/s raw)" : "–";
    const peers = (nd.peers || []).map((p) => `<span class="p ${esc(p.state)}">${esc(p.id)} ${esc(p.state)}</span>`).join("");
    const f = nd.fetches || {};
    const takeovers = (f.backup || 0) + (f.owners_buddy || 0) + (f.local || 0) + (f.scan || 0);
    el.querySelector(".body").innerHTML = `
      <h3>${esc(nd.id)} <span class="badge ${esc(nd.state)}">${esc(nd.state)}</span></h3>
      <div class="addr">app ${esc(nd.http.replace(/^.*:/, ":"))} · repl ${esc(nd.repl.replace(/^.*:/, ":"))}${nd.pid ? " · pid " + nd.pid : ""}${live && nd.started ? " · up " + since(nd.started, st.now) : ""}</div>
      <div class="big">
        <div><b class="owned">${live ? nd.sessions : "–"}</b><span>sessions owned</span></div>
        <div><b class="backups">${live ? nd.backups : "–"}</b><span>backups held</span></div>
        <div><b class="buddy">${live && nd.buddy ? esc(nd.buddy) : "–"}</b><span>buddy</span></div>
      </div>
      ${spark(nd.history || [])}
      <dl class="kv">
        <dt>replicated</dt><dd>${num(nd.recordsPerSec)} rec/s · ${bytes(nd.wireBytesPerSec)}/s</dd>
        <dt>wire / raw</dt><dd>${ratio}</dd>
        <dt>sent in all</dt><dd>${num(nd.recordsSent)} rec · ${bytes(nd.bytesWire)}</dd>
        <dt>ack p50 · p99</dt><dd>${micros(nd.latencyP50us)} · ${micros(nd.latencyP99us)}</dd>
        <dt title="sessions taken from a backup copy (their owner was gone)">takeovers</dt><dd>${takeovers}</dd>
        <dt title="takeovers whose owner was already known dead">failovers</dt><dd>${nd.failovers}</dd>
        <dt title="sessions taken over from a draining node">handovers</dt><dd>${nd.promoted}</dd>
        <dt title="full copies sent to a new buddy">transfers</dt><dd>${nd.transferSessions}</dd>
        <dt>degraded commits</dt><dd>${nd.degraded}</dd>
      </dl>
      <div class="peers">${live ? (peers ? "sees: " + peers : "sees no peer") : "process not running"}</div>`;
    el.querySelector(".kill").disabled = !live;
    el.querySelector(".stop").disabled = !isUp(nd.state);
    el.querySelector(".restart").textContent = live ? "Restart" : "Start";
    el.querySelector(".restart").disabled = nd.state === "starting" || nd.state === "stopping";
  }
}

function drawTotals(st) {
  let owned = 0, backups = 0, rps = 0, wire = 0, raw = 0, up = 0;
  for (const nd of st.nodes) {
    if (!isLive(nd.state)) continue;
    up++;
    owned += nd.sessions; backups += nd.backups; rps += nd.recordsPerSec; wire += nd.wireBytesPerSec; raw += nd.rawBytesPerSec;
  }
  const c = st.balancer_counts || {};
  $("#totals").innerHTML = `
    <div><b>${up} / ${st.nodes.length}</b><span>nodes up</span></div>
    <div><b id="total-sessions">${owned}</b><span>sessions (${backups} backups)</span></div>
    <div><b>${num(rps)}</b><span>records/s replicated</span></div>
    <div><b>${bytes(wire)}/s</b><span>on the wire (raw ${bytes(raw)}/s)</span></div>
    <div><b>${num(c.rerouted || 0)}</b><span>requests rerouted</span></div>
    <div><b>${num(c.retries || 0)}</b><span>balancer retries</span></div>`;
}

function drawEvents(st) {
  const rows = (st.events || []).map((e) =>
    `<tr data-kind="${esc(e.kind)}"><td class="t">${hhmmss(e.time)}</td><td class="k"><span class="kind ${esc(e.kind)}">${esc(e.kind)}</span></td><td>${esc(e.msg)}</td></tr>`);
  $("#events tbody").innerHTML = rows.join("") || `<tr><td class="empty">nothing yet</td></tr>`;
}

async function act(what, id) {
  try {
    const r = await fetch(`/dashboard/api/${what}?node=${encodeURIComponent(id)}`, {method: "POST", headers: {"X-Tandem-Dashboard": "1"}});
    if (!r.ok) alert(`${what} ${id}: ${await r.text()}`);
  } catch (e) {
    alert(`${what} ${id}: ${e}`);
  }
  refresh();
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const r = await fetch("/dashboard/api/state", {cache: "no-store"});
    const st = await r.json();
    $("#mode").textContent = "mode " + st.mode;
    $("#balancer").textContent = "balancer " + st.balancer;
    drawRing(st.nodes);
    drawNodes(st);
    drawTotals(st);
    drawEvents(st);
    $("#updated").textContent = "updated " + hhmmss(st.now);
    document.body.dataset.ready = "1";
  } catch (e) {
    $("#updated").textContent = "balancer unreachable";
  } finally {
    busy = false;
  }
}

refresh();
setInterval(refresh, 1000);

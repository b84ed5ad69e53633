// The annotation tool's page: uses only the HTTP API of docs/annotator.md (the token rides on every request).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);

const state = {
  status: null, frame: 0, length: 0, width: 0, height: 0,
  target: 0, // the frame last asked for: a slower answer for another frame is dropped (loadFrame)
  image: null, mask: null, // the current frame's ImageBitmap and label map (Uint8Array, the user's ids)
  objects: [], selected: null, tool: "brush", size: 12, overlay: "mask",
  undo: [], redo: [], painting: false, last: null, polygon: [], strokes: [], stroke: null,
  zoom: 1, panX: 0, panY: 0, playing: null, polling: null, presence: {},
};

// ------------------------------------------------------------------------------------ the API
async function api(method, path, body, raw) {
  const headers = { "X-STCN-Token": TOKEN };
  let payload;
  if (raw) { payload = body; headers["Content-Type"] = "application/octet-stream"; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const response = await fetch(path, { method, headers, body: payload });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}
const getJSON = async (path) => (await api("GET", path)).json();
const send = async (method, path, body) => (await api(method, path, body)).json();

function say(text) { $("message").textContent = text; }
async function guarded(fn) {
  try { await fn(); } catch (e) { say("error: " + e.message); }
}

// ------------------------------------------------------------------------------ loading state
async function loadStatus() {
  const s = await getJSON("/api/status");
  state.status = s;
  state.length = s.video.frames; state.width = s.video.width; state.height = s.video.height;
  state.objects = s.objects;
  if (state.selected === null || !state.objects.some((o) => o.id === state.selected)) {
    state.selected = state.objects.length ? state.objects[0].id : null;
  }
  $("video-name").textContent = `${s.video.name} (${s.video.width}x${s.video.height}, ${s.video.frames} frames)`;
  $("device").textContent = s.device;
  const m = s.memory;
  $("memory").textContent = `${m.frames.length} permanent frames, cache ${m.cache_mb} MB (${m.cache_frames} frames)`;
  $("frame-slider").max = state.length - 1;
  $("frame-count").textContent = state.length - 1;
  const s2m = s.s2m.available;
  document.querySelectorAll(".s2m").forEach((b) => { b.disabled = !s2m; b.title += s2m ? "" : ""; });
  $("s2m-note").textContent = s2m ? "" : "scribbles and clicks are off: " + s.s2m.reason;
  renderObjects();
  showJob(s.job);
}

async function loadPresence() { state.presence = await getJSON("/api/presence"); drawTimeline(); }

async function loadFrame(t) {
  t = Math.max(0, Math.min(state.length - 1, t));
  state.target = t;
  const [img, mask] = await Promise.all([
    api("GET", `/api/frames/${t}/image`).then((r) => r.blob()).then((b) => createImageBitmap(b)),
    api("GET", `/api/frames/${t}/mask`).then((r) => r.arrayBuffer()),
  ]);
  if (t !== state.target) return; // the user moved on meanwhile
  if (t !== state.frame) { state.undo = []; state.redo = []; }
  state.frame = t; state.image = img; state.mask = new Uint8Array(mask); state.polygon = [];
  $("frame-slider").value = t; $("frame-index").textContent = t;
  const canvas = $("canvas");
  if (canvas.width !== state.width) { canvas.width = state.width; canvas.height = state.height; fit(); }
  draw(); drawTimeline();
}

// ---------------------------------------------------------------------------------- drawing
function colourOf(id) {
  const o = state.objects.find((x) => x.id === id);
  if (o) return o.colour;
  return [255, 255, 255];
}

let drawPending = false;
function draw() { // at most once per display frame: a stroke's many mouse moves cost one redraw
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; redraw(); });
}

function redraw() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  if (!state.image) return;
  ctx.globalAlpha = state.overlay === "fade" ? 0.35 : 1;
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(state.image, 0, 0);
  ctx.globalAlpha = 1;
  const w = state.width, h = state.height, m = state.mask;
  const frame = ctx.getImageData(0, 0, w, h), px = frame.data;
  const lut = {};
  for (const o of state.objects) lut[o.id] = o.colour;
  for (let i = 0; i < m.length; i++) {
    const id = m[i];
    if (!id) continue;
    const c = lut[id] || [255, 255, 255];
    if (state.overlay === "outline") {
      const x = i % w, y = (i / w) | 0;
      const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || m[i - 1] !== id || m[i + 1] !== id
        || m[i - w] !== id || m[i + w] !== id;
      if (!edge) continue;
      px[4 * i] = c[0]; px[4 * i + 1] = c[1]; px[4 * i + 2] = c[2];
    } else if (state.overlay === "fade") {
      // fade: the objects at full brightness over a darkened frame
      px[4 * i] = Math.min(255, px[4 * i] / 0.35); px[4 * i + 1] = Math.min(255, px[4 * i + 1] / 0.35);
      px[4 * i + 2] = Math.min(255, px[4 * i + 2] / 0.35);
    } else {
      px[4 * i] = (px[4 * i] + c[0]) >> 1; px[4 * i + 1] = (px[4 * i + 1] + c[1]) >> 1;
      px[4 * i + 2] = (px[4 * i + 2] + c[2]) >> 1;
    }
  }
  ctx.putImageData(frame, 0, 0);
  if (state.polygon.length) {
    ctx.strokeStyle = "#fff"; ctx.beginPath();
    state.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  }
  if (state.strokes.length || state.stroke) {
    for (const s of [...state.strokes, ...(state.stroke ? [state.stroke] : [])]) {
      const c = s.object ? colourOf(s.object) : [255, 255, 255];
      ctx.strokeStyle = `rgb(${c.join(",")})`; ctx.lineWidth = 3; ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (s.points.length === 1) ctx.arc(s.points[0][0], s.points[0][1], 3, 0, 7);
      ctx.stroke();
    }
  }
}

function drawTimeline() {
  const tl = $("timeline");
  tl.width = tl.clientWidth || 600;
  const ctx = tl.getContext("2d"), n = Math.max(1, state.length), w = tl.width / n;
  ctx.fillStyle = "#26282c"; ctx.fillRect(0, 0, tl.width, tl.height);
  const rows = state.objects.length || 1, rowH = 24 / rows;
  state.objects.forEach((o, r) => {
    ctx.fillStyle = `rgb(${o.colour.join(",")})`;
    for (const t of state.presence[o.id] || []) ctx.fillRect(t * w, 4 + r * rowH, Math.max(1, w), rowH - 1);
  });
  const s = state.status;
  if (s) {
    ctx.fillStyle = "#fff";
    for (const t of s.interacted) ctx.fillRect(t * w, 30, Math.max(2, w), 8);
    ctx.fillStyle = "#f5a623";
    for (const t of s.edited) ctx.fillRect(t * w, 30, Math.max(2, w), 4);
  }
  ctx.strokeStyle = "#e33"; ctx.strokeRect(state.frame * w, 0, Math.max(1, w), tl.height);
}

function renderObjects() {
  const ul = $("objects");
  ul.innerHTML = "";
  state.objects.forEach((o, i) => {
    const li = document.createElement("li");
    li.dataset.id = o.id;
    if (o.id === state.selected) li.classList.add("selected");
    const hex = "#" + o.colour.map((v) => v.toString(16).padStart(2, "0")).join("");
    li.innerHTML = `<span class="key">${i + 1}</span><input type="color" value="${hex}" title="colour">`
      + `<input type="text" value="" title="name (id ${o.id})"><span class="id">#${o.id}</span>`
      + `<button class="delete" title="delete this object from every frame">x</button>`;
    li.querySelector("input[type=text]").value = o.name;
    li.addEventListener("click", () => { state.selected = o.id; renderObjects(); });
    li.querySelector("input[type=text]").addEventListener("change", (e) => guarded(async () => {
      await send("PATCH", `/api/objects/${o.id}`, { name: e.target.value }); await loadStatus();
    }));
    li.querySelector("input[type=color]").addEventListener("change", (e) => guarded(async () => {
      const v = e.target.value;
      const colour = [1, 3, 5].map((k) => parseInt(v.slice(k, k + 2), 16));
      await send("PATCH", `/api/objects/${o.id}`, { colour }); await loadStatus(); draw(); drawTimeline();
    }));
    li.querySelector(".delete").addEventListener("click", (e) => guarded(async () => {
      e.stopPropagation();
      if (!confirm(`Delete ${o.name} from every frame?`)) return;
      await send("DELETE", `/api/objects/${o.id}`); await loadStatus(); await loadFrame(state.target); await loadPresence();
    }));
    ul.appendChild(li);
  });
}

// --------------------------------------------------------------------------- painting input
function framePoint(e) {
  const r = $("canvas").getBoundingClientRect();
  return [(e.clientX - r.left) * state.width / r.width, (e.clientY - r.top) * state.height / r.height];
}

function paintDisk(cx, cy, value) {
  const r = state.size / 2, w = state.width, h = state.height, m = state.mask;
  for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++) {
    for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++) {
      const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy > r * r) continue;
      m[y * w + x] = value; // the eraser clears every object under it
    }
  }
}

function paintLine(a, b, value) {
  const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(1, state.size / 4)));
  for (let s = 0; s <= steps; s++) paintDisk(a[0] + (b[0] - a[0]) * s / steps, a[1] + (b[1] - a[1]) * s / steps, value);
}

function fillPolygon(points, value) {
  const w = state.width, h = state.height;
  for (let y = 0; y < h; y++) {
    const yc = y + 0.5, xs = [];
    for (let i = 0; i < points.length; i++) {
      const [x1, y1] = points[i], [x2, y2] = points[(i + 1) % points.length];
      if ((y1 <= yc && y2 > yc) || (y2 <= yc && y1 > yc)) xs.push(x1 + (yc - y1) * (x2 - x1) / (y2 - y1));
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      for (let x = Math.max(0, Math.ceil(xs[k] - 0.5)); x <= Math.min(w - 1, Math.floor(xs[k + 1] - 0.5)); x++) {
        state.mask[y * w + x] = value;
      }
    }
  }
}

function remember() { state.undo.push(state.mask.slice()); state.redo = []; }

async function saveMask() {
  await api("PUT", `/api/frames/${state.frame}/mask`, state.mask, true);
  await loadStatus(); await loadPresence();
}

function needObject() {
  if (state.selected === null) { say("add an object first (+ object)"); return false; }
  return true;
}

function onDown(e) {
  if (e.button === 1 || (e.button === 0 && e.shiftKey)) { startPan(e); return; }
  if (!state.mask) return;
  const p = framePoint(e);
  if (state.tool === "brush" || state.tool === "eraser") {
    if (state.tool === "brush" && !needObject()) return;
    remember(); state.painting = true; state.last = p;
    paintDisk(p[0], p[1], state.tool === "brush" ? state.selected : 0); draw();
  } else if (state.tool === "polygon" && e.button === 0) {
    if (!needObject()) return;
    state.polygon.push(p); draw();
  } else if (state.tool === "scribble") {
    if (!needObject()) return;
    state.stroke = { object: e.button === 2 ? 0 : state.selected, points: [p] }; draw();
  } else if (state.tool === "click") {
    if (!needObject()) return;
    state.strokes.push({ object: e.button === 2 ? 0 : state.selected, points: [p] });
    guarded(sendStrokes);
  }
  e.preventDefault();
}

function onMove(e) {
  if (state.panning) { movePan(e); return; }
  const p = framePoint(e);
  if (state.painting) {
    paintLine(state.last, p, state.tool === "brush" ? state.selected : 0); state.last = p; draw();
  } else if (state.stroke) { state.stroke.points.push(p); draw(); }
}

function onUp() {
  if (state.panning) { state.panning = null; return; }
  if (state.painting) { state.painting = false; guarded(saveMask); }
  if (state.stroke) { state.strokes.push(state.stroke); state.stroke = null; guarded(sendStrokes); }
}

async function sendStrokes() {
  const w = state.width - 1 || 1, h = state.height - 1 || 1;
  const strokes = state.strokes.map((s) => ({
    object: s.object,
    path: s.points.map(([x, y]) => [Math.min(1, Math.max(0, x / w)), Math.min(1, Math.max(0, y / h))]),
  }));
  remember();
  try {
    await send("POST", `/api/frames/${state.frame}/scribbles`, { strokes });
  } finally { state.strokes = []; }
  await loadFrame(state.target); await loadStatus(); await loadPresence();
}

function finishPolygon() {
  if (state.polygon.length >= 3 && needObject()) {
    remember(); fillPolygon(state.polygon, state.selected); state.polygon = []; draw(); guarded(saveMask);
  }
}

// -------------------------------------------------------------------------------- zoom, pan
function fit() {
  const stage = $("stage"), sw = stage.clientWidth || state.width, sh = stage.clientHeight || state.height;
  state.zoom = Math.min(sw / state.width, sh / state.height) || 1; state.panX = 0; state.panY = 0; applyView();
}
function applyView() {
  $("canvas").style.transform = `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`;
}
function zoomBy(f) { state.zoom *= f; applyView(); }
function startPan(e) { state.panning = [e.clientX - state.panX, e.clientY - state.panY]; e.preventDefault(); }
function movePan(e) { state.panX = e.clientX - state.panning[0]; state.panY = e.clientY - state.panning[1]; applyView(); }

// ------------------------------------------------------------------------------------ jobs
function showJob(job) {
  const running = job && job.state === "running";
  $("cancel").disabled = !running;
  ["propagate-both", "propagate-forward", "propagate-backward", "commit", "export"].forEach((id) => { $(id).disabled = running; });
  if (!job) { $("job-state").textContent = "idle"; return; }
  $("progress").max = Math.max(1, job.total); $("progress").value = job.done;
  $("job-state").textContent = `${job.kind} ${job.state} ${job.done}/${job.total}` + (job.message ? ` ${job.message}` : "");
  if (job.kind === "export" && job.state === "done") $("export-result").textContent = "exported to " + job.message;
  if (running && !state.polling) state.polling = setInterval(poll, 300);
}

async function poll() {
  const { job } = await getJSON("/api/job");
  showJob(job);
  if (!job || job.state !== "running") {
    clearInterval(state.polling); state.polling = null;
    await loadStatus(); await loadFrame(state.target); await loadPresence();
  }
}

async function propagate(direction) {
  const { job } = await send("POST", "/api/propagate", { frame: state.frame, direction });
  showJob(job);
}

async function exportAll() {
  const formats = [...document.querySelectorAll(".format")].filter((c) => c.checked).map((c) => c.value);
  const { job } = await send("POST", "/api/export", { formats });
  $("export-result").textContent = "";
  showJob(job);
}

// ------------------------------------------------------------------------------- controls
function setTool(tool) {
  state.tool = tool; state.polygon = []; state.strokes = [];
  document.querySelectorAll(".tool").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
  draw();
}

function step(d) { guarded(() => loadFrame(state.target + d)); }

function togglePlay() {
  if (state.playing) { clearInterval(state.playing); state.playing = null; $("play").textContent = "play"; return; }
  const fps = (state.status && state.status.video.fps) || 10;
  $("play").textContent = "pause";
  state.playing = setInterval(() => {
    if (state.frame >= state.length - 1) { togglePlay(); return; }
    step(1);
  }, 1000 / Math.min(fps, 15));
}

function bind() {
  const canvas = $("canvas");
  canvas.addEventListener("mousedown", onDown);
  window.addEventListener("mousemove", onMove);
  window.addEventListener("mouseup", onUp);
  canvas.addEventListener("dblclick", finishPolygon);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  $("stage").addEventListener("wheel", (e) => { e.preventDefault(); zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1); }, { passive: false });
  document.querySelectorAll(".tool").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("brush-size").addEventListener("input", (e) => { state.size = +e.target.value; $("brush-size-value").textContent = state.size; });
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("add-object").addEventListener("click", () => guarded(async () => {
    const o = await send("POST", "/api/objects", {}); state.selected = o.id; await loadStatus(); drawTimeline();
  }));
  $("propagate-both").addEventListener("click", () => guarded(() => propagate("both")));
  $("propagate-forward").addEventListener("click", () => guarded(() => propagate("forward")));
  $("propagate-backward").addEventListener("click", () => guarded(() => propagate("backward")));
  $("commit").addEventListener("click", () => guarded(() => propagate("none")));
  $("cancel").addEventListener("click", () => guarded(async () => showJob((await send("POST", "/api/cancel")).job)));
  $("export").addEventListener("click", () => guarded(exportAll));
  $("overlay-mode").addEventListener("change", (e) => { state.overlay = e.target.value; draw(); });
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("zoom-reset").addEventListener("click", fit);
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("play").addEventListener("click", togglePlay);
  $("frame-slider").addEventListener("change", (e) => guarded(() => loadFrame(+e.target.value)));
  $("timeline").addEventListener("click", (e) => {
    const r = e.target.getBoundingClientRect();
    guarded(() => loadFrame(Math.floor((e.clientX - r.left) / r.width * state.length)));
  });
  window.addEventListener("resize", () => { fit(); drawTimeline(); });
  window.addEventListener("keydown", onKey);
}

function undo() {
  if (!state.undo.length) return;
  state.redo.push(state.mask.slice()); state.mask = state.undo.pop(); draw(); guarded(saveMask);
}
function redo() {
  if (!state.redo.length) return;
  state.undo.push(state.mask.slice()); state.mask = state.redo.pop(); draw(); guarded(saveMask);
}

function onKey(e) {
  if (e.target.tagName === "INPUT" && e.target.type === "text") return;
  const k = e.key;
  if ((e.ctrlKey || e.metaKey) && k === "z") { undo(); e.preventDefault(); return; }
  if ((e.ctrlKey || e.metaKey) && k === "y") { redo(); e.preventDefault(); return; }
  if (k === "ArrowLeft") step(-1);
  else if (k === "ArrowRight") step(1);
  else if (k === " ") { togglePlay(); e.preventDefault(); }
  else if (k === "Enter") guarded(() => propagate("both"));
  else if (k === "b") setTool("brush");
  else if (k === "e") setTool("eraser");
  else if (k === "p") setTool("polygon");
  else if (k === "s" && !$("tool-scribble").disabled) setTool("scribble");
  else if (k === "c" && !$("tool-click").disabled) setTool("click");
  else if (k === "+" || k === "=") zoomBy(1.25);
  else if (k === "-") zoomBy(0.8);
  else if (k === "0") fit();
  else if (/^[1-9]$/.test(k) && state.objects[+k - 1]) { state.selected = state.objects[+k - 1].id; renderObjects(); }
}

window.addEventListener("load", () => guarded(async () => {
  bind();
  await loadStatus();
  await loadFrame(0);
  await loadPresence();
  document.body.dataset.ready = "1";
}));

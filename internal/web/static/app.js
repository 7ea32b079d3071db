// pixelflow canvas page, following docs/protocol.md: connect first (the
// hello gives the position), then load the snapshot (the binary form); apply
// events only when their version is newer; on a sequence gap reconnect with
// ?since= so the gateway replays it; on resync reload the snapshot.
//
// A loaded snapshot REPLACES the canvas rather than merging into it by
// version: versions start over when the store loses its data (a restart of a
// memory store, a restore, a rollback), and merging would keep the old,
// higher-numbered pixels forever. The events received since the snapshot was
// asked for are kept (held) and applied again on top of it, by version,
// except those at or before its position (read before its pixels, so they are
// in it). Only the newest request's snapshot is used: an older one still in
// flight is dropped when it arrives.
//
// The WebSocket speaks the binary subprotocol (wire.js): a pixel costs a
// phone about 8 bytes instead of JSON's 60. It carries no commit times, so
// the header shows the round trip of a ping instead of a commit → receive
// latency.
//
// Drawing: one ImageData holds the canvas; painting marks a dirty rectangle
// and one animation frame copies just that rectangle to the <canvas>. Zoom
// and pan are a CSS transform of that one canvas.
import { SUBPROTOCOL, PING, decode } from './wire.js';

const $ = (id) => document.getElementById(id);
const cv = $('canvas'), ctx = cv.getContext('2d'), view = $('viewport');

const PALETTE = ['#FFFFFF', '#E4E4E4', '#888888', '#222222', '#FFA7D1', '#E50000', '#E59500', '#A06A42',
  '#E5D900', '#94E044', '#02BE01', '#00D3DD', '#0083C7', '#0000EA', '#CF6EE4', '#820080'];

let W = 0, H = 0, img = null, versions = null;
let dirty = null, frame = 0;
let epoch = null, seq = 0, ws = null, backoff = 250;
let pingAt = 0; // performance.now() of the ping in flight; 0: none
const PING_EVERY = 10000; // ms
let snapGen = 0, held = null, snapFailed = false; // the newest snapshot request; events received since it
const MAX_HELD = 65536; // past it, ask for a newer snapshot (which holds them) instead
let scale = 1, tx = 0, ty = 0;

function setState(s) { const el = $('state'); el.textContent = s; el.className = s; }
function showError(msg) { $('err').textContent = msg || ''; }

function resize(w, h) {
  if (w === W && h === H) return;
  W = w; H = h; cv.width = w; cv.height = h;
  img = ctx.createImageData(w, h); img.data.fill(255);
  versions = new Float64Array(w * h);
  ctx.putImageData(img, 0, 0);
  fit();
}

function paint(gx, gy, color, version) {
  if (gx < 0 || gy < 0 || gx >= W || gy >= H) return;
  const i = gy * W + gx;
  if (versions[i] >= version) return;
  versions[i] = version;
  const n = parseInt(color.slice(1), 16), o = i * 4;
  img.data[o] = n >> 16; img.data[o + 1] = (n >> 8) & 255; img.data[o + 2] = n & 255; img.data[o + 3] = 255;
  if (!dirty) dirty = { x0: gx, y0: gy, x1: gx, y1: gy };
  else { dirty.x0 = Math.min(dirty.x0, gx); dirty.y0 = Math.min(dirty.y0, gy); dirty.x1 = Math.max(dirty.x1, gx); dirty.y1 = Math.max(dirty.y1, gy); }
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  if (!dirty) return;
  const d = dirty; dirty = null;
  ctx.putImageData(img, 0, 0, d.x0, d.y0, d.x1 - d.x0 + 1, d.y1 - d.y0 + 1);
}

// requestSnapshot asks for the snapshot (after a hello without resume or a
// resync) and starts holding the events that follow; earlier held events
// are dropped: the new snapshot holds them, or they belong to a history the
// store no longer has.
function requestSnapshot() {
  const gen = ++snapGen;
  held = [];
  loadSnapshot(gen, 250);
}

async function loadSnapshot(gen, retryIn) {
  setState('resyncing');
  let c;
  try {
    // The binary form: 3 bytes a pixel (gzip on the wire) and no versions.
    // Its ETag lets the browser keep it and ask again cheaply (304 while
    // no newer position exists).
    const r = await fetch('/api/canvas', { headers: { Accept: 'application/octet-stream' } });
    if (!r.ok) throw new Error('could not load the canvas (HTTP ' + r.status + ')');
    c = {
      width: +r.headers.get('X-Canvas-Width'), height: +r.headers.get('X-Canvas-Height'),
      position: { epoch: r.headers.get('X-Stream-Epoch') || '', seq: +(r.headers.get('X-Stream-Seq') || 0) },
      rgb: new Uint8Array(await r.arrayBuffer()),
    };
    if (!c.width || !c.height || c.rgb.length !== c.width * c.height * 3) throw new Error('the canvas snapshot is malformed');
  } catch (e) {
    if (gen !== snapGen) return;
    snapFailed = true;
    showError(e.message + '; retrying');
    setTimeout(() => gen === snapGen && loadSnapshot(gen, Math.min(retryIn * 2, 5000)), retryIn);
    return;
  }
  if (gen !== snapGen) return; // a newer request's snapshot replaces the canvas
  if (snapFailed) { snapFailed = false; showError(''); }
  replace(c);
  held = null;
  setState(ws && ws.readyState === WebSocket.OPEN ? 'connected' : 'reconnecting');
}

// replace makes the canvas the snapshot c (RGB bytes), then applies the held
// events it may not hold. The snapshot's pixels get version 0: the events
// that follow apply over them, and since the relay publishes each pixel's
// versions in order, the last one of each pixel leaves it at its newest
// colour.
function replace(c) {
  if (c.width !== W || c.height !== H) resize(c.width, c.height);
  const d = img.data, rgb = c.rgb;
  for (let i = 0, o = 0, q = 0; i < W * H; i++, o += 3, q += 4) {
    d[q] = rgb[o]; d[q + 1] = rgb[o + 1]; d[q + 2] = rgb[o + 2]; d[q + 3] = 255;
  }
  versions.fill(0);
  const at = c.position || {};
  for (const e of held) {
    if (at.epoch && e.epoch === at.epoch && e.seq <= at.seq) continue;
    paint(e.gx, e.gy, e.color, e.version);
  }
  dirty = { x0: 0, y0: 0, x1: W - 1, y1: H - 1 };
  if (!frame) frame = requestAnimationFrame(flush);
}

function connect() {
  const since = epoch ? '?since=' + encodeURIComponent(epoch + ':' + seq) : '';
  setState(epoch ? 'reconnecting' : 'connecting');
  const sock = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' + since, [SUBPROTOCOL]);
  sock.binaryType = 'arraybuffer';
  ws = sock;
  sock.onopen = () => ping(sock);
  sock.onmessage = (m) => {
    let f;
    try {
      if (typeof m.data === 'string') throw new Error('a text frame on ' + SUBPROTOCOL);
      f = decode(new Uint8Array(m.data));
    } catch (e) {
      // The server broke the protocol: start over on a new connection.
      showError('bad frame from the server (' + e.message + '); reconnecting');
      sock.close();
      return;
    }
    if (f.type === 'hello') {
      backoff = 250;
      if (!f.resumed) { epoch = f.epoch; seq = f.seq; requestSnapshot(); }
      else setState('connected'); // the gap after our seq is replayed next
    } else if (f.type === 'events') {
      for (const e of f.events) {
        if (e.seq <= seq) continue;
        if (e.seq > seq + 1) { sock.close(); return; } // gap: reconnect with since → replay
        seq = e.seq;
        if (e.kind === 'canary') continue;
        paint(e.gx, e.gy, e.color, e.version);
        if (held) {
          held.push({ epoch, seq: e.seq, gx: e.gx, gy: e.gy, color: e.color, version: e.version });
          if (held.length > MAX_HELD) requestSnapshot();
        }
      }
    } else if (f.type === 'resync') {
      // The gateway's position now; no epoch while Redis has none yet, and
      // then nothing to resume from on a reconnect.
      epoch = f.epoch || null; seq = f.seq || 0;
      requestSnapshot();
    } else if (f.type === 'pong' && pingAt) {
      $('rtt').textContent = Math.round(performance.now() - pingAt) + ' ms';
      pingAt = 0;
    }
    $('pos').textContent = epoch ? epoch + ':' + seq : '–';
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    pingAt = 0;
    setState('reconnecting');
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

// ping measures the round trip to the gateway, now and every PING_EVERY
// while sock is the open connection.
function ping(sock) {
  if (ws !== sock || sock.readyState !== WebSocket.OPEN) return;
  pingAt = performance.now();
  sock.send(PING);
  setTimeout(() => ping(sock), PING_EVERY);
}

// ---- zoom and pan ----
function apply() {
  cv.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
  $('zoom').textContent = (Math.round(scale * 10) / 10) + '×';
}
function fit() {
  const r = view.getBoundingClientRect();
  scale = Math.max(0.25, Math.min(r.width / W, r.height / H) * 0.95);
  tx = (r.width - W * scale) / 2; ty = (r.height - H * scale) / 2;
  apply();
}
view.addEventListener('wheel', (ev) => {
  ev.preventDefault();
  const r = view.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
  const next = Math.min(64, Math.max(0.25, scale * Math.pow(1.0015, -ev.deltaY)));
  tx = mx - (mx - tx) * next / scale; ty = my - (my - ty) * next / scale; scale = next;
  apply();
}, { passive: false });

let drag = null;
view.addEventListener('pointerdown', (ev) => { drag = { x: ev.clientX, y: ev.clientY, tx, ty, moved: false }; view.setPointerCapture(ev.pointerId); });
view.addEventListener('pointermove', (ev) => {
  if (!drag) return;
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) < 4) return;
  drag.moved = true; view.classList.add('panning');
  tx = drag.tx + dx; ty = drag.ty + dy; apply();
});
view.addEventListener('pointerup', (ev) => {
  const d = drag; drag = null; view.classList.remove('panning');
  if (!d || d.moved) return;
  const r = cv.getBoundingClientRect();
  const gx = Math.floor((ev.clientX - r.left) * W / r.width), gy = Math.floor((ev.clientY - r.top) * H / r.height);
  if (gx >= 0 && gy >= 0 && gx < W && gy < H) place(gx, gy);
});

// ---- placing ----
async function place(gx, gy) {
  const color = $('color').value.toUpperCase();
  let res;
  try {
    res = await fetch('/api/pixels', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ gx, gy, color }) });
  } catch (e) {
    showError('The server cannot be reached; your pixel was not placed. Try again in a moment.');
    return;
  }
  if (res.ok) { showError(''); return; }
  const body = await res.json().catch(() => ({}));
  const msg = body.error ? body.error.message : 'HTTP ' + res.status;
  if (res.status === 429) showError('Slow down: ' + msg + ' (wait ' + (res.headers.get('Retry-After') || 'a few') + ' s)');
  else if (res.status === 503) showError('The canvas store is unavailable right now; your pixel was not placed. Try again shortly.');
  else showError('Pixel refused: ' + msg);
}

for (const c of PALETTE) {
  const b = document.createElement('button');
  b.style.background = c; b.title = c; b.setAttribute('aria-label', c);
  b.onclick = () => { $('color').value = c.toLowerCase(); for (const o of document.querySelectorAll('#palette button')) o.classList.toggle('on', o === b); };
  $('palette').appendChild(b);
}
window.addEventListener('resize', () => W && fit());
connect();

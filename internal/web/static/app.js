// Minimal canvas client following docs/protocol.md: connect first (hello gives
// the position), then load the snapshot; apply by version; resume with since.
const cv = document.getElementById('canvas'), ctx = cv.getContext('2d');
const $ = (id) => document.getElementById(id);
const versions = new Map(); // "x,y" -> version
let epoch = null, seq = 0, ws = null, backoff = 250;

function setState(s) { const el = $('state'); el.textContent = s; el.className = s; }
function paint(gx, gy, color, version) {
  const k = gx + ',' + gy;
  if ((versions.get(k) || 0) >= version) return;
  versions.set(k, version);
  ctx.fillStyle = color; ctx.fillRect(gx, gy, 1, 1);
}
async function loadSnapshot() {
  setState('resyncing');
  const r = await fetch('/api/canvas');
  if (!r.ok) throw new Error('snapshot: HTTP ' + r.status);
  const c = await r.json();
  if (cv.width !== c.width || cv.height !== c.height) { cv.width = c.width; cv.height = c.height; versions.clear(); }
  for (const p of c.pixels) paint(p.gx, p.gy, p.color, p.version);
  setState('connected');
}
function connect() {
  const since = epoch ? '?since=' + encodeURIComponent(epoch + ':' + seq) : '';
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' + since);
  ws.onmessage = (m) => {
    const f = JSON.parse(m.data);
    if (f.type === 'hello') {
      const fresh = !f.resumed; backoff = 250;
      if (fresh) { epoch = f.epoch; seq = f.seq; } // resumed: the gap after our seq is replayed next
      if (fresh) loadSnapshot().catch((e) => $('err').textContent = e.message); else setState('connected');
    } else if (f.type === 'events') {
      for (const e of f.events) {
        if (e.seq <= seq) continue;
        if (e.seq > seq + 1) { ws.close(); return; } // gap: reconnect with since → replay
        seq = e.seq;
        if (e.kind === 'canary') continue;
        paint(e.gx, e.gy, e.color, e.version);
        $('lat').textContent = Math.max(0, Date.now() - Date.parse(e.committedAt)) + ' ms';
      }
    } else if (f.type === 'resync') {
      epoch = f.epoch || epoch; seq = f.seq ?? seq;
      loadSnapshot().catch((e) => $('err').textContent = e.message);
    }
    $('pos').textContent = epoch + ':' + seq;
  };
  ws.onclose = () => { setState('reconnecting'); setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 5000); };
}
cv.addEventListener('click', async (ev) => {
  const r = cv.getBoundingClientRect();
  const gx = Math.floor((ev.clientX - r.left) * cv.width / r.width), gy = Math.floor((ev.clientY - r.top) * cv.height / r.height);
  const res = await fetch('/api/pixels', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ gx, gy, color: $('color').value.toUpperCase() }) });
  if (res.ok) { $('err').textContent = ''; return; }
  const body = await res.json().catch(() => ({}));
  const msg = body.error ? body.error.message : 'HTTP ' + res.status;
  $('err').textContent = res.status === 429 ? 'Slow down: ' + msg : res.status === 503 ? 'The canvas store is unavailable, try again shortly.' : msg;
});
connect();

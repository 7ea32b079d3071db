// The pipeline dashboard: polls /ops/data each second (the same numbers as
// /metrics) and keeps the last two minutes of each figure as a sparkline.
const $ = (id) => document.getElementById(id);
const KEEP = 120;
const series = {};
const cards = [
  ['backlog', 'outbox backlog', (d) => d.outbox && d.outbox.backlog],
  ['oldest', 'oldest pending (s)', (d) => d.outbox && (d.outbox.oldestPendingAgeSeconds || 0)],
  ['stream', 'stream length', (d) => d.streamLength],
  ['lag', 'gateway lag (sum)', (d) => sum(d.gateways, 'lag')],
  ['clients', 'clients (all gateways)', (d) => sum(d.gateways, 'clients')],
  ['canary', 'canary latency (ms)', (d) => max(d.gateways, 'canaryLatencyMs')],
  ['p50', 'commit→send P50 (ms)', (d) => max(d.gateways, 'commitToBroadcastP50Ms')],
  ['p99', 'commit→send P99 (ms)', (d) => max(d.gateways, 'commitToBroadcastP99Ms')],
];
function sum(gws, k) { return (gws || []).reduce((a, g) => a + (g[k] || 0), 0); }
function max(gws, k) { return (gws || []).reduce((a, g) => Math.max(a, g[k] || 0), 0); }

for (const [id, label] of cards) {
  const el = document.createElement('div');
  el.className = 'card'; el.id = 'card-' + id;
  el.innerHTML = `<div class="label">${label}</div><div class="value" id="v-${id}">–</div><svg viewBox="0 0 ${KEEP} 36" preserveAspectRatio="none"><polyline id="s-${id}" fill="none" stroke="#1565c0" stroke-width="1.5" vector-effect="non-scaling-stroke"/></svg><div class="scale" id="k-${id}"></div>`;
  $('cards').appendChild(el);
}
const relay = document.createElement('div');
relay.className = 'card';
relay.innerHTML = '<div class="label">relay lease holder · epoch</div><div class="value" id="v-relay" style="font-size:1rem">–</div>';
$('cards').appendChild(relay);

function spark(id, v) {
  const s = series[id] || (series[id] = []);
  s.push(typeof v === 'number' ? v : 0);
  if (s.length > KEEP) s.shift();
  const top = Math.max(1, ...s);
  $('s-' + id).setAttribute('points', s.map((y, i) => `${i + KEEP - s.length},${35 - 33 * y / top}`).join(' '));
  // The line's scale: its bottom is 0, its top the largest value shown.
  $('k-' + id).textContent = `0 – ${Math.round(top * 10) / 10} over the last ${s.length} s`;
}

async function tick() {
  try {
    const r = await fetch('/ops/data', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const d = await r.json();
    for (const [id, , f] of cards) {
      const v = f(d);
      $('v-' + id).textContent = typeof v === 'number' ? (Math.round(v * 10) / 10).toString() : '–';
      spark(id, v);
    }
    const o = d.outbox || {}, rl = d.relay || {};
    $('v-relay').textContent = (o.leaseHolder || rl.leader || '–') + ' · ' + (o.epoch || rl.epoch || '–');
    $('gateways').tBodies[0].innerHTML = (d.gateways || []).map((g) => `<tr><td>${g.id}</td><td>${g.clients}</td><td>${g.regionClients || 0}</td><td>${(g.topRegions || []).slice(0, 6).map((r) => r.region + '×' + r.clients).join(' ') || '–'}</td><td>${g.lag}</td><td>${g.degraded}</td><td>${g.resyncs}</td><td>${g.lastSeq}</td><td>${g.canaryLatencyMs.toFixed(1)}</td><td>${g.commitToBroadcastP50Ms.toFixed(1)}</td><td>${g.commitToBroadcastP99Ms.toFixed(1)}</td><td>${Math.max(0, (Date.parse(d.at) - Date.parse(g.at)) / 1000).toFixed(0)} s</td></tr>`).join('');
    const st = $('status');
    if (d.errors) { st.textContent = 'degraded: ' + d.errors.join('; '); st.className = 'bad'; }
    else { st.textContent = 'live · ' + new Date(d.at).toLocaleTimeString() + ' · via ' + d.instance; st.className = ''; }
  } catch (e) {
    $('status').textContent = 'cannot reach /ops/data: ' + e.message; $('status').className = 'bad';
  }
}
tick();
setInterval(tick, 1000);

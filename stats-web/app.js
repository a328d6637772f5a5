// Gorgon stats dashboard.
//
// Polls GET /api/v1/snapshot once a second (one request at a time) and redraws the charts
// (Apache ECharts, vendored at /vendor/echarts.min.js) and tables from it. The shape of the
// snapshot is described in stats-web/README.md. No framework, no build step.
//
// For tests, `window.gorgonDashboard` tells how far the page got:
//   { updates: snapshots drawn, last: the last snapshot drawn, error: last error or null }.

'use strict';

(() => {
  const SNAPSHOT_URL = '/api/v1/snapshot';
  const TOKEN_KEY = 'gorgon.token';
  const WINDOW_KEY = 'gorgon.window';
  const WINDOWS = [60, 300, 900]; // the choices of #window, in seconds
  const DEFAULT_WINDOW = 900;
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 5000;

  // Colours the charts use; the page's own colours are in style.css.
  const THEME = {
    text: '#d9e1ec',
    muted: '#8795a8',
    line: '#283344',
    split: '#1f2835',
    gridBg: '#0b1016',
    tooltipBg: '#1c2532',
    p50: '#ffffff',
    p99: '#ff5d8f',
    // Heatmap counts, light to heavy (viridis).
    heat: ['#482475', '#414487', '#355f8d', '#2a788e', '#21918c', '#22a884', '#44bf70', '#7ad151', '#bddf26', '#fde725'],
    roles: {
      web_face: '#58a6ff',
      processor: '#3fb950',
      store: '#bc8cff',
      notifier: '#f0883e',
      stats: '#8795a8',
    },
    http: { '1xx': '#8795a8', '2xx': '#3fb950', '3xx': '#58a6ff', '4xx': '#d29922', '5xx': '#f85149' },
  };

  const dashboard = { updates: 0, last: null, error: null };
  window.gorgonDashboard = dashboard;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // Formatting

  const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

  /** 1234567 → "1 234 567" (narrow no-break spaces between groups). */
  function fmtInt(n) {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '–';
    return intFormat.format(Math.round(Number(n))).replace(/,/g, '\u202f');
  }

  /** 12345 → "12.3k", 0.5 → "0.5", 1234567 → "1.2M". */
  function fmtCompact(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e9) return trim(v / 1e9, a >= 1e11 ? 0 : 1) + 'G';
    if (a >= 1e6) return trim(v / 1e6, a >= 1e8 ? 0 : 1) + 'M';
    if (a >= 1e3) return trim(v / 1e3, a >= 1e5 ? 0 : 1) + 'k';
    if (a > 0 && a < 10 && !Number.isInteger(v)) return trim(v, 1);
    return String(Math.round(v));
  }

  function trim(v, digits) {
    return v.toFixed(digits).replace(/\.0$/, '');
  }

  const fmtRate = (v) => fmtCompact(v) + '/s';

  /** Microseconds → "850 µs", "1.2 ms", "3.4 s". */
  function fmtUs(us) {
    if (us === null || us === undefined || !Number.isFinite(us)) return '–';
    if (us < 1) return trim(us, 2) + ' µs';
    if (us < 10) return trim(us, 1) + ' µs';
    if (us < 1e3) return Math.round(us) + ' µs';
    if (us < 1e6) return trim(us / 1e3, us < 1e5 ? 1 : 0) + ' ms';
    if (us < 6e7) return trim(us / 1e6, us < 1e7 ? 1 : 0) + ' s';
    return fmtDuration(us / 1e6);
  }

  /** Milliseconds → "350 ms", "1.2 s", "–" for null. */
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return '–';
    return fmtUs(ms * 1000);
  }

  /** Seconds → "12.5 s", "3 m 20 s", "2 h 05 m", "3 d 4 h". */
  function fmtDuration(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return '–';
    if (s < 60) return trim(s, 1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} m ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h} h ${String(m % 60).padStart(2, '0')} m`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  function fmtAgo(ms) {
    if (ms === null || ms === undefined) return '–';
    const s = Math.max(0, ms) / 1000;
    return (s < 60 ? s.toFixed(1) + ' s' : fmtDuration(s)) + ' ago';
  }

  const pad2 = (n) => String(n).padStart(2, '0');

  /** Unix seconds → local "HH:MM:SS". */
  function hms(sec) {
    const d = new Date(sec * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  }

  /** A stable colour for a string (FNV-1a hash → hue; two lightness levels to keep neighbours apart). */
  function colourFor(s) {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    const hue = Math.round(((h * 0.618033988749895) % 1) * 360);
    const light = (h >>> 16) & 1 ? 62 : 72;
    return `hsl(${hue} 62% ${light}%)`;
  }

  const roleColour = (name) => THEME.roles[name] || colourFor(name);

  // ---------------------------------------------------------------------------------------
  // Token: taken once from the URL fragment (#token=…), kept in sessionStorage, sent as a
  // bearer header. Never put in a URL query.

  let memoryToken = null; // used only if sessionStorage is unavailable

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch {
      return memoryToken;
    }
  }

  function setToken(t) {
    memoryToken = t || null;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* storage disabled: the in-memory copy serves this page's lifetime */
    }
  }

  function takeTokenFromFragment() {
    if (!location.hash || location.hash.length < 2) return;
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has('token')) return;
    const t = params.get('token');
    if (t) setToken(t);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }

  class AuthError extends Error {
    constructor(status, hadToken) {
      super(status === 401 ? (hadToken ? 'token not accepted (401)' : 'admin token required (401)') : 'token lacks the admin scope (403)');
      this.status = status;
    }
  }

  function showAuthForm(err) {
    const form = $('auth');
    $('auth-message').textContent =
      err.status === 403 ? 'This token is not an admin token. Admin token:' : getToken() ? 'The token was not accepted. Admin token:' : 'This dashboard needs an admin token:';
    if (form.hidden) {
      form.hidden = false;
      $('auth-token').focus();
    }
  }

  function hideAuthForm() {
    $('auth').hidden = true;
  }

  $('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('auth-token');
    const t = input.value.trim();
    if (!t) return;
    setToken(t);
    input.value = '';
    hideAuthForm();
    wake(); // try at once rather than at the next tick
  });

  // ---------------------------------------------------------------------------------------
  // Time range: how many seconds to ask for (`?window=`), chosen in #window and kept in
  // sessionStorage. The answer may hold fewer seconds (a stats role up for less than that);
  // everything is sized from `seconds.length`, never from `window_s`.

  let memoryWindow = null; // used only if sessionStorage is unavailable

  function getWindow() {
    let stored = memoryWindow;
    try {
      stored = sessionStorage.getItem(WINDOW_KEY) ?? memoryWindow;
    } catch {
      /* storage disabled */
    }
    const w = Number(stored);
    return WINDOWS.includes(w) ? w : DEFAULT_WINDOW;
  }

  function setWindow(w) {
    memoryWindow = String(w);
    try {
      sessionStorage.setItem(WINDOW_KEY, String(w));
    } catch {
      /* storage disabled: the in-memory copy serves this page's lifetime */
    }
  }

  const windowSelect = $('window');
  windowSelect.value = String(getWindow());
  windowSelect.addEventListener('change', () => {
    const w = Number(windowSelect.value);
    if (!WINDOWS.includes(w)) return;
    setWindow(w);
    wake(); // ask for the new range at once rather than at the next tick
  });

  // ---------------------------------------------------------------------------------------
  // Polling

  async function fetchSnapshot(windowS) {
    const token = getToken();
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const res = await fetch(`${SNAPSHOT_URL}?window=${windowS}`, { headers, cache: 'no-store', credentials: 'same-origin', signal: ctl.signal });
      if (res.status === 401 || res.status === 403) throw new AuthError(res.status, !!token);
      if (!res.ok) throw new Error(`HTTP ${res.status}${await errorDetail(res)}`);
      return await res.json();
    } catch (e) {
      if (e.name === 'AbortError') throw new Error(`no answer within ${FETCH_TIMEOUT_MS / 1000} s`);
      if (e instanceof TypeError) throw new Error(e.message || 'network error'); // fetch's network failure
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** ": message" from a JSON error body ({"error":{"message"}}) or a short text body. */
  async function errorDetail(res) {
    try {
      const text = (await res.text()).trim();
      if (!text) return '';
      try {
        const j = JSON.parse(text);
        const m = (j.error && (j.error.message || j.error.code)) || j.message;
        if (m) return ': ' + String(m).slice(0, 160);
      } catch {
        /* not JSON */
      }
      return ': ' + text.slice(0, 160);
    } catch {
      return '';
    }
  }

  let wakeUp = null;
  const wake = () => wakeUp && wakeUp();
  const sleep = (ms) =>
    new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        wakeUp = null;
        resolve();
      }
      wakeUp = done;
    });

  async function pollForever() {
    for (;;) {
      const started = performance.now();
      const windowS = getWindow();
      let snap = null;
      try {
        snap = await fetchSnapshot(windowS);
        // The range was changed while this request was out: drop its answer, ask again now.
        if (windowS !== getWindow()) continue;
      } catch (e) {
        if (e instanceof AuthError) showAuthForm(e);
        setStatus(false, 'disconnected: ' + (e.message || String(e)));
        dashboard.error = e.message || String(e);
      }
      if (snap) {
        hideAuthForm();
        const problem = draw(snap);
        if (problem) {
          setStatus(false, 'drawing failed: ' + problem);
          dashboard.error = 'draw: ' + problem;
        } else {
          setStatus(true, 'updated ' + hms(Math.floor((snap.now_ms ?? Date.now()) / 1000)));
        }
      }
      await sleep(Math.max(0, POLL_MS - (performance.now() - started)));
    }
  }

  function setStatus(ok, text) {
    $('status-dot').className = 'dot ' + (ok ? 'ok' : 'bad');
    $('status').classList.toggle('error', !ok);
    $('status-text').textContent = text;
    document.body.classList.toggle('stale', !ok);
  }

  // ---------------------------------------------------------------------------------------
  // Drawing. Each part is drawn on its own, so that one bad part does not blank the others;
  // the first failure is returned (and logged) and the snapshot does not count as drawn.

  function draw(snap) {
    const parts = [drawTiles, drawHeatmaps, drawThroughput, drawInstances, drawPartitions, drawQueues, drawMetrics];
    let problem = null;
    for (const part of parts) {
      try {
        part(snap);
      } catch (e) {
        console.error(`dashboard: ${part.name}:`, e);
        problem = problem || `${part.name}: ${e.message || e}`;
      }
    }
    if (!problem) {
      dashboard.updates += 1;
      dashboard.last = snap;
      dashboard.error = null;
    }
    return problem;
  }

  /** Indices of the seconds that are over by the snapshot's clock, the newest `n` of them. */
  function lastFullSeconds(snap, n) {
    const secs = snap.seconds || [];
    const nowS = Math.floor((snap.now_ms ?? Date.now()) / 1000);
    let end = secs.length;
    while (end > 0 && secs[end - 1] >= nowS) end--;
    const out = [];
    for (let i = Math.max(0, end - n); i < end; i++) out.push(i);
    return out;
  }

  function average(arr, idx) {
    if (!arr || !idx.length) return null;
    return idx.reduce((a, i) => a + (arr[i] || 0), 0) / idx.length;
  }

  function setTile(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle('bad', cls === 'bad');
    el.classList.toggle('good', cls === 'good');
  }

  function drawTiles(snap) {
    const inst = snap.instances || [];
    const healthy = inst.filter((i) => i.healthy).length;
    setTile('tile-instances', inst.length ? `${healthy} / ${inst.length} healthy` : 'none', healthy < inst.length || !inst.length ? 'bad' : 'good');

    const last10 = lastFullSeconds(snap, 10);
    const roles = (snap.throughput && snap.throughput.roles) || {};
    const inj = average(roles.web_face, last10);
    const proc = average(roles.processor, last10);
    setTile('tile-injected', inj === null ? '–' : fmtRate(inj));
    setTile('tile-processed', proc === null ? '–' : fmtRate(proc));

    const e2e = snap.heatmaps && snap.heatmaps.e2e;
    let worst = null;
    if (e2e && e2e.p99) for (const i of last10) if (e2e.p99[i] != null) worst = Math.max(worst ?? 0, e2e.p99[i]);
    setTile('tile-e2e', fmtUs(worst));

    const h5 = (snap.http || {})['5xx'];
    const errors = h5 ? last10.reduce((a, i) => a + (h5[i] || 0), 0) : null;
    setTile('tile-5xx', errors === null ? '–' : fmtInt(errors), errors ? 'bad' : null);

    const ar = snap.archive || {};
    setTile('archive-backlog', fmtInt(ar.backlog));
    const bar = $('archive-fill-bar');
    if (ar.topic_bound) {
      const frac = Math.min(1, (ar.topic_entries || 0) / ar.topic_bound);
      bar.style.width = (frac * 100).toFixed(1) + '%';
      bar.className = 'fill-bar' + (frac >= 0.95 ? ' bad' : frac >= 0.8 ? ' warn' : '');
      $('archive-fill').textContent = `topic ${trim(frac * 100, 1)} % of ${fmtCompact(ar.topic_bound)}`;
      $('archive-fill').title = `${fmtInt(ar.topic_entries)} of ${fmtInt(ar.topic_bound)} entries in the output topic`;
    } else {
      bar.style.width = '0';
      $('archive-fill').textContent = `topic ${fmtInt(ar.topic_entries)}`;
    }
    // The rates are of topic entries (one per processor batch) over the last 10 s.
    const drain = $('archive-drain');
    drain.title = `entries added ${fmtRate(ar.added_per_s)}, written to MongoDB ${fmtRate(ar.written_per_s)} (last 10 s)`;
    if (ar.drain_s === 0) {
      drain.textContent = 'caught up';
    } else if (ar.drain_s != null) {
      drain.textContent = `drains in ${fmtDuration(ar.drain_s)}`;
    } else if (ar.backlog && ar.added_per_s != null) {
      drain.textContent = `growing: +${fmtRate(ar.added_per_s)}, writing ${fmtRate(ar.written_per_s)}`;
    } else {
      drain.textContent = '–';
    }

    setTile('dead-letters', fmtInt(snap.dead_letters ?? 0), snap.dead_letters ? 'bad' : null);
  }

  // ---------------------------------------------------------------------------------------
  // Charts

  const charts = new Map(); // element id → ECharts instance

  function chart(id) {
    let c = charts.get(id);
    if (!c) {
      if (!window.echarts) throw new Error('ECharts did not load');
      const el = $(id);
      c = echarts.init(el, null, { renderer: 'canvas' });
      new ResizeObserver(() => c.resize()).observe(el);
      charts.set(id, c);
    }
    return c;
  }

  const axisCommon = {
    axisLine: { lineStyle: { color: THEME.line } },
    axisTick: { lineStyle: { color: THEME.line } },
    axisLabel: { color: THEME.muted, fontSize: 11 },
    splitLine: { lineStyle: { color: THEME.split } },
  };

  const tooltipCommon = {
    backgroundColor: THEME.tooltipBg,
    borderColor: THEME.line,
    textStyle: { color: THEME.text, fontSize: 12 },
    confine: true,
  };

  /** Seconds between x-axis labels, so that about `most` labels fit across `n` seconds. */
  function labelStep(n, most) {
    for (const step of [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]) if (n / step <= most) return step;
    return 7200;
  }

  /**
   * Where a value (µs) sits on the heatmap's hidden value axis, on which category (bucket) i
   * is centred on i and spans i - 0.5 .. i + 0.5. Inside its bucket (lo <= v < hi) a value is
   * placed log-linearly across that band: y = i - 0.5 + log(v/lo)/log(hi/lo), so a line runs
   * through the very cells that hold its value (lo at the band's bottom edge, hi at its top).
   * The first bucket may start at 0 µs: it is measured from 1 µs, and v <= 1 µs sits at its
   * bottom edge. The open last bucket (hi null) puts the value at its centre.
   */
  function bucketPosition(v, buckets) {
    if (v === null || v === undefined || !Number.isFinite(v) || !buckets.length) return null;
    for (let i = 0; i < buckets.length; i++) {
      const { lo, hi } = buckets[i];
      if (hi === null || hi === undefined) return i;
      if (v >= hi) continue;
      const base = lo > 0 ? lo : 1;
      if (v <= base || hi <= base) return i - 0.5;
      return i - 0.5 + Math.log(v / base) / Math.log(hi / base);
    }
    return buckets.length - 1;
  }

  function bucketRange(b) {
    if (!b) return '';
    if (b.hi === null || b.hi === undefined) return `≥ ${fmtUs(b.lo)}`;
    if (!b.lo) return `< ${fmtUs(b.hi)}`;
    return `${fmtUs(b.lo)} – ${fmtUs(b.hi)}`;
  }

  /**
   * Pieces of the colour scale for counts up to `max`: 1, 2–4, 5–9, 10–19, 20–49, … (1-2-5
   * steps, so roughly logarithmic), each with a colour spread over THEME.heat.
   */
  function countPieces(max) {
    const edges = [1];
    for (let e = 1; edges[edges.length - 1] < max; ) {
      for (const m of [2, 5, 10]) {
        const v = m * e;
        if (v > edges[edges.length - 1]) edges.push(v);
        if (v >= max) break;
      }
      e *= 10;
    }
    const pieces = [];
    for (let i = 0; i < edges.length; i++) {
      const lo = edges[i];
      const hi = i + 1 < edges.length ? edges[i + 1] - 1 : undefined;
      if (hi !== undefined && hi < lo) continue;
      if (hi === undefined && lo > Math.max(1, max)) break;
      pieces.push(hi === undefined || hi === lo ? (hi === lo ? { min: lo, max: lo, label: fmtInt(lo) } : { min: lo, label: `≥ ${fmtCompact(lo)}` }) : { min: lo, max: hi, label: `${fmtCompact(lo)}–${fmtCompact(hi)}` });
    }
    const n = pieces.length;
    pieces.forEach((p, i) => {
      p.color = THEME.heat[n === 1 ? THEME.heat.length - 1 : Math.round((i * (THEME.heat.length - 1)) / (n - 1))];
    });
    return pieces;
  }

  const HEATMAPS = [
    { id: 'heatmap-e2e', key: 'e2e', large: true },
    { id: 'heatmap-rest', key: 'rest', large: true },
    { id: 'heatmap-batch', key: 'batch_commit', large: false },
    { id: 'heatmap-archive', key: 'archive_write', large: false },
  ];

  function drawHeatmaps(snap) {
    const hm = snap.heatmaps || {};
    // Merged, not replaced, so an open tooltip survives the redraw (series keep their order).
    for (const h of HEATMAPS) {
      const c = chart(h.id);
      c.setOption(heatmapOption(hm[h.key] || {}, snap.seconds || [], h.large, c.getHeight()), { lazyUpdate: true });
    }
  }

  /** A centred note over an empty chart; merged by id, so it is hidden again once data comes. */
  const emptyNote = (empty, text) => ({
    elements: [
      { id: 'empty-note', type: 'text', left: 'center', top: 'middle', invisible: !empty, silent: true, z: 10, style: { text, fill: THEME.muted, fontSize: 13 } },
    ],
  });

  function heatmapOption(h, seconds, large, height) {
    const buckets = h.buckets || [];
    const cells = h.cells || [];
    const xs = seconds.map(hms);
    const counts = h.count || [];

    // Show only the rows that hold data, one spare row either side, at least 8 rows.
    let lo = Infinity;
    let hi = -Infinity;
    let maxCount = 0;
    for (const c of cells) {
      if (c[1] < lo) lo = c[1];
      if (c[1] > hi) hi = c[1];
      if (c[2] > maxCount) maxCount = c[2];
    }
    const nb = buckets.length;
    if (lo > hi) {
      // No samples: show 100 µs .. 1 s, where most of what Gorgon times falls.
      lo = Math.max(0, buckets.findIndex((b) => b.lo >= 100));
      hi = buckets.findIndex((b) => b.lo >= 1e6);
      if (hi < 0) hi = nb - 1;
    }
    lo = Math.max(0, lo - 1);
    hi = Math.min(nb - 1, hi + 1);
    while (hi - lo + 1 < Math.min(8, nb)) {
      if (lo > 0) lo--;
      if (hi - lo + 1 < Math.min(8, nb) && hi < nb - 1) hi++;
    }

    // Label every k-th row so that labels are at least 13 px apart.
    const rowPx = (height - 48) / Math.max(1, hi - lo + 1);
    const yLabelEvery = Math.max(1, Math.ceil(13 / Math.max(1, rowPx)));

    const line = (values) => (values || []).map((v) => (v === null || v === undefined ? null : { value: bucketPosition(v, buckets), us: v }));
    const step = labelStep(seconds.length, large ? 14 : 6);
    const onStep = (i) => seconds[i] % step === 0;

    const lineSeries = (name, values, colour, type) => ({
      type: 'line',
      name,
      xAxisIndex: 0,
      yAxisIndex: 1,
      data: line(values),
      connectNulls: false,
      showSymbol: true,
      showAllSymbol: true,
      symbol: 'circle',
      symbolSize: 6,
      // Invisible points: they only catch the mouse for the tooltip.
      itemStyle: { color: colour, opacity: 0 },
      emphasis: { itemStyle: { opacity: 1 }, lineStyle: { width: 2.5 } },
      lineStyle: { color: colour, width: 1.8, type, shadowColor: 'rgba(0,0,0,0.9)', shadowBlur: 3 },
      z: 3,
      animation: false,
    });

    return {
      animation: false,
      textStyle: { color: THEME.text },
      grid: { left: 62, right: large ? 108 : 96, top: 22, bottom: 26, show: true, backgroundColor: THEME.gridBg, borderColor: THEME.line },
      legend: {
        data: ['p50', 'p99'],
        top: 0,
        right: large ? 108 : 96,
        itemWidth: 18,
        itemHeight: 2,
        textStyle: { color: THEME.muted, fontSize: 11 },
        itemStyle: { opacity: 1 },
      },
      tooltip: {
        ...tooltipCommon,
        trigger: 'item',
        formatter: (p) => {
          if (p.seriesType === 'heatmap') {
            const [si, bi, n] = p.data;
            return `${escapeHtml(xs[si] || '')}<br>${escapeHtml(bucketRange(buckets[bi]))}<br>count <b>${fmtInt(n)}</b>` + (counts[si] ? ` of ${fmtInt(counts[si])}` : '');
          }
          if (p.seriesType === 'line' && p.data) {
            return `${escapeHtml(xs[p.dataIndex] || '')}<br>${p.seriesName} <b>${fmtUs(p.data.us)}</b>` + (counts[p.dataIndex] ? `<br>${fmtInt(counts[p.dataIndex])} samples` : '');
          }
          return '';
        },
      },
      xAxis: {
        ...axisCommon,
        type: 'category',
        data: xs,
        splitLine: { show: false },
        axisTick: { ...axisCommon.axisTick, interval: (i) => onStep(i) },
        axisLabel: { ...axisCommon.axisLabel, interval: (i) => onStep(i), hideOverlap: true },
      },
      yAxis: [
        {
          ...axisCommon,
          type: 'category',
          data: buckets.map((b) => b.label),
          min: lo,
          max: hi,
          splitLine: { show: false },
          axisTick: { ...axisCommon.axisTick, interval: yLabelEvery - 1 },
          axisLabel: { ...axisCommon.axisLabel, interval: yLabelEvery - 1 },
        },
        // Hidden axis for the p50/p99 lines: category i is centred on value i.
        { type: 'value', show: false, min: lo - 0.5, max: hi + 0.5 },
      ],
      visualMap: {
        type: 'piecewise',
        seriesIndex: 0,
        dimension: 2,
        pieces: countPieces(maxCount),
        orient: 'vertical',
        right: 4,
        top: 'middle',
        itemWidth: 12,
        itemHeight: large ? 12 : 9,
        itemGap: large ? 4 : 2,
        textGap: 6,
        show: cells.length > 0,
        showLabel: true,
        textStyle: { color: THEME.muted, fontSize: large ? 11 : 10 },
        hoverLink: true,
      },
      graphic: emptyNote(cells.length === 0, 'no samples in this window'),
      series: [
        {
          type: 'heatmap',
          name: 'count',
          xAxisIndex: 0,
          yAxisIndex: 0,
          data: cells,
          progressive: 0, // draw every cell in one frame: no flicker on the 1 s redraw
          emphasis: { itemStyle: { borderColor: '#fff', borderWidth: 1 } },
        },
        lineSeries('p50', h.p50, THEME.p50, 'solid'),
        lineSeries('p99', h.p99, THEME.p99, 'solid'),
      ],
    };
  }

  /** Line charts of per-second counts, one series per key, on a time axis. */
  function seriesChart(id, byKey, seconds, colours, opts = {}) {
    const names = Object.keys(byKey || {}).sort(opts.order || undefined);
    const first = seconds.length ? seconds[0] * 1000 : undefined;
    const last = seconds.length ? seconds[seconds.length - 1] * 1000 : undefined;
    const option = {
      animation: false,
      textStyle: { color: THEME.text },
      color: names.map(colours),
      grid: { left: 52, right: 16, top: 34, bottom: 26 },
      legend: { type: 'scroll', top: 0, left: 0, textStyle: { color: THEME.muted, fontSize: 11 }, pageTextStyle: { color: THEME.muted } },
      tooltip: { ...tooltipCommon, trigger: 'axis', valueFormatter: (v) => fmtRate(v), axisPointer: { lineStyle: { color: THEME.muted } } },
      xAxis: {
        ...axisCommon,
        type: 'time',
        min: first,
        max: last,
        splitLine: { show: false },
        axisLabel: { ...axisCommon.axisLabel, hideOverlap: true, formatter: (ms) => hms(Math.floor(ms / 1000)) },
      },
      yAxis: { ...axisCommon, type: 'value', min: 0, axisLabel: { ...axisCommon.axisLabel, formatter: (v) => fmtCompact(v) } },
      graphic: emptyNote(names.length === 0 || seconds.length === 0, 'no data yet'),
      series: names.map((name) => ({
        id: name,
        name,
        type: 'line',
        showSymbol: false,
        sampling: 'lttb',
        lineStyle: { width: 1.6 },
        areaStyle: opts.area && opts.area(name) ? { opacity: 0.12 } : undefined,
        emphasis: { focus: 'series' },
        data: seconds.map((s, i) => [s * 1000, byKey[name][i] ?? 0]),
      })),
    };
    chart(id).setOption(option, { replaceMerge: ['series'], lazyUpdate: true });
  }

  function drawThroughput(snap) {
    const seconds = snap.seconds || [];
    const tp = snap.throughput || {};
    const roleOrder = ['web_face', 'processor', 'store', 'notifier', 'stats'];
    const byRoleOrder = (a, b) => {
      const ia = roleOrder.indexOf(a);
      const ib = roleOrder.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : a > b ? 1 : 0);
    };
    seriesChart('chart-roles', tp.roles, seconds, roleColour, { order: byRoleOrder });
    seriesChart('chart-topologies', tp.topologies, seconds, colourFor);
    seriesChart('chart-http', snap.http, seconds, (k) => THEME.http[k] || colourFor(k), { area: (k) => k === '2xx' });
  }

  // ---------------------------------------------------------------------------------------
  // Tables and the partition map. Rows are updated in place (not rebuilt) so that hover and
  // native tooltips survive the 1 s redraw.

  /** Makes `parent` have one child per item: creates or removes children, then updates each. */
  function syncChildren(parent, items, create, update) {
    while (parent.children.length > items.length) parent.lastElementChild.remove();
    while (parent.children.length < items.length) parent.appendChild(create());
    items.forEach((item, i) => update(parent.children[i], item, i));
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function setClass(el, cls) {
    if (el.className !== cls) el.className = cls;
  }

  /** A row of `n` cells; `cells` are [text, className] pairs. */
  function rowMaker(n) {
    return () => {
      const tr = document.createElement('tr');
      for (let i = 0; i < n; i++) tr.appendChild(document.createElement('td'));
      return tr;
    };
  }

  /** Fills a row's cells: each is [text, className] or a function given the <td>. */
  function fillRow(tr, cells) {
    cells.forEach((cell, i) => {
      const td = tr.children[i];
      if (typeof cell === 'function') return cell(td);
      setClass(td, cell[1] || '');
      setText(td, cell[0]);
    });
  }

  /** Makes `td` hold one <span> child of class `cls` with `text`; returns the span. */
  function spanCell(td, cls, text) {
    let span = td.firstElementChild;
    if (!span || td.childNodes.length !== 1) {
      td.replaceChildren();
      span = td.appendChild(document.createElement('span'));
    }
    setClass(span, cls);
    setText(span, text);
    return span;
  }

  /**
   * Syncs a table's <tbody> rows with `items` (one <tr> per item, nothing else in the
   * <tbody>); the table's <tfoot> note shows instead while there are none.
   */
  function syncTable(table, items, ncells, update) {
    const tbody = table.tBodies[0];
    if (table.tFoot) table.tFoot.hidden = items.length > 0;
    syncChildren(tbody, items, rowMaker(ncells), update);
  }

  function drawInstances(snap) {
    const list = [...(snap.instances || [])].sort((a, b) => cmp(a.role, b.role) || cmp(a.instance, b.instance));
    syncTable($('instances'), list, 8, (tr, it) => {
      const state = instanceState(it);
      setClass(tr, [it.healthy ? '' : 'unhealthy', state === 'stopped' ? 'stopped' : ''].filter(Boolean).join(' '));
      const role = String(it.role ?? '–');
      fillRow(tr, [
        (td) => {
          // colour swatch, then the role name
          if (td.childNodes.length !== 2) td.replaceChildren(Object.assign(document.createElement('span'), { className: 'swatch' }), document.createTextNode(''));
          td.firstChild.style.background = roleColour(role);
          if (td.lastChild.data !== role) td.lastChild.data = role;
        },
        [String(it.instance ?? '–'), 'mono'],
        [String(it.host ?? '–')],
        [it.pid == null ? '–' : String(it.pid), 'num'],
        [String(it.version ?? '–')],
        [fmtDuration(it.uptime_s), 'num'],
        [fmtAgo(it.age_ms), 'num'],
        (td) => spanCell(td, 'badge ' + (BADGE_STATES.includes(state) ? state : it.healthy ? 'healthy' : 'unhealthy'), state),
      ]);
    });
  }

  const BADGE_STATES = ['healthy', 'unhealthy', 'stopped'];

  /** The instance's `state` ("healthy", "unhealthy", "stopped"); from `healthy` if absent. */
  function instanceState(it) {
    if (typeof it.state === 'string' && it.state) return it.state;
    return it.healthy ? 'healthy' : 'unhealthy';
  }

  const cmp = (a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0);

  function drawPartitions(snap) {
    const grid = $('partitions');
    const parts = [...(snap.partitions || [])].sort((a, b) => a.partition - b.partition);
    $('partitions-empty').hidden = parts.length > 0;
    syncChildren(
      grid,
      parts,
      () => document.createElement('div'),
      (cell, p) => {
        const owner = p.owner ?? null;
        setClass(cell, 'partition' + (owner ? '' : ' orphan'));
        setText(cell, String(p.partition));
        const bg = owner ? colourFor(owner) : '';
        if (cell.style.background !== bg) cell.style.background = bg;
        const lease = p.lease_ms_left == null ? 'no lease' : `lease ${fmtMs(p.lease_ms_left)} left`;
        const title = `partition ${p.partition}\nowner ${owner ?? 'none'}\n${lease}\nwaiting ${fmtInt(p.waiting)}, in flight ${fmtInt(p.in_flight)}`;
        if (cell.title !== title) cell.title = title;
      },
    );

    // Legend: owner → colour, with how many partitions each holds.
    const owners = new Map();
    for (const p of parts) owners.set(p.owner ?? null, (owners.get(p.owner ?? null) || 0) + 1);
    const entries = [...owners].sort((a, b) => (a[0] === null) - (b[0] === null) || cmp(a[0], b[0]));
    syncChildren(
      $('partitions-legend'),
      entries,
      () => {
        const li = document.createElement('li');
        const sw = document.createElement('span');
        sw.className = 'swatch';
        const name = document.createElement('span');
        const count = document.createElement('span');
        li.append(sw, name, count);
        return li;
      },
      (li, [owner, n]) => {
        const [sw, name, count] = li.children;
        sw.style.background = owner ? colourFor(owner) : '#4a5260';
        setClass(name, owner ? 'mono' : '');
        setText(name, owner ?? 'no owner');
        setText(count, ` · ${n} partition${n === 1 ? '' : 's'}`);
      },
    );
  }

  function drawQueues(snap) {
    const parts = [...(snap.partitions || [])].sort((a, b) => a.partition - b.partition);
    const n = (v, hotAt) => [fmtInt(v ?? 0), 'num' + (!v ? ' zero' : hotAt && v >= hotAt ? ' hot' : '')];
    syncTable($('queues'), parts, 8, (tr, p) => {
      fillRow(tr, [
        [String(p.partition), 'num'],
        [p.owner ?? 'none', p.owner ? 'mono' : 'bad'],
        n(p.waiting, 100),
        n(p.in_flight),
        n(p.delayed),
        p.dead ? [fmtInt(p.dead), 'num bad'] : n(p.dead),
        [fmtMs(p.oldest_age_ms), 'num' + (p.oldest_age_ms == null ? ' zero' : p.oldest_age_ms >= 1000 ? ' hot' : '')],
        n(p.outbox),
      ]);
    });
  }

  function fmtLabels(labels) {
    const e = Object.entries(labels || {});
    return e.length ? e.map(([k, v]) => `${k}=${v}`).join(', ') : '';
  }

  function fmtValue(v) {
    return Number.isInteger(v) ? fmtInt(v) : typeof v === 'number' ? trim(v, 3) : String(v ?? '–');
  }

  function drawMetrics(snap) {
    syncTable($('counters'), snap.counters || [], 4, (tr, c) =>
      fillRow(tr, [[String(c.role ?? '')], [String(c.name ?? ''), 'mono'], [fmtLabels(c.labels), 'mono'], [fmtValue(c.value), 'num']]),
    );
    syncTable($('gauges'), snap.gauges || [], 4, (tr, g) =>
      fillRow(tr, [[String(g.instance ?? g.role ?? ''), 'mono'], [String(g.name ?? ''), 'mono'], [fmtLabels(g.labels), 'mono'], [fmtValue(g.value), 'num']]),
    );
  }

  // ---------------------------------------------------------------------------------------

  takeTokenFromFragment();
  pollForever();
})();

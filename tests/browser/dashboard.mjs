#!/usr/bin/env node
// Opens the stats dashboard in headless Chromium, waits until it shows live data, saves a
// full-page screenshot and prints one JSON line describing what the page showed.
//
//   node dashboard.mjs --url http://127.0.0.1:PORT/ --screenshot PATH
//                      [--token T] [--timeout-ms 60000] [--min-instances N]
//
// Uses the system Chromium (/usr/bin/chromium, or $CHROMIUM); downloads no browser.
// Ready means: at least 2 snapshots drawn, the end-to-end heatmap has a cell with a count,
// and the instances table has at least N rows (default 1). Then one more snapshot is awaited
// before the screenshot. Exit 0 when ready; 1 on timeout or failure (the screenshot is still
// saved when the page opened); 2 on bad arguments. Progress goes to stderr.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const POLL_MS = 250;

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node dashboard.mjs --url URL --screenshot PATH [--token T] [--timeout-ms 60000] [--min-instances 1]\n`,
  );
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string' },
      screenshot: { type: 'string' },
      token: { type: 'string' },
      'timeout-ms': { type: 'string', default: '60000' },
      'min-instances': { type: 'string', default: '1' },
    },
    strict: true,
  }));
} catch (e) {
  usage(e.message);
}
if (!args.url) usage('--url is required');
if (!args.screenshot) usage('--screenshot is required');
const timeoutMs = Number(args['timeout-ms']);
const minInstances = Number(args['min-instances']);
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) usage('--timeout-ms must be a positive number');
if (!Number.isInteger(minInstances) || minInstances < 0) usage('--min-instances must be a whole number');

let target;
try {
  target = new URL(args.url);
} catch {
  usage(`not a URL: ${args.url}`);
}
// The token travels in the fragment, which never reaches the server; the page moves it into
// sessionStorage and drops it from the address.
if (args.token) target.hash = 'token=' + encodeURIComponent(args.token);

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const started = Date.now();
const log = (line) => process.stderr.write(`[dashboard ${((Date.now() - started) / 1000).toFixed(1)} s] ${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs in the page: what it shows now. */
function probe() {
  const d = window.gorgonDashboard || null;
  const heat = (id) => {
    const el = document.getElementById(id);
    const inst = el && window.echarts ? window.echarts.getInstanceByDom(el) : null;
    if (!inst) return null;
    const series = (inst.getOption().series || [])[0];
    let cells = 0;
    let count = 0;
    for (const c of (series && series.data) || []) {
      const v = Array.isArray(c) ? c[2] : c && Array.isArray(c.value) ? c.value[2] : 0;
      if (v > 0) {
        cells += 1;
        count += v;
      }
    }
    return { cells, count, type: series ? series.type : null };
  };
  const rows = [...document.querySelectorAll('#instances tbody tr')];
  const roles = [...new Set(rows.map((tr) => (tr.cells[0] ? tr.cells[0].textContent.trim() : '')).filter(Boolean))].sort();
  const e2e = heat('heatmap-e2e');
  const rest = heat('heatmap-rest');
  return {
    updates: d ? d.updates : 0,
    error: d ? d.error : 'window.gorgonDashboard is missing',
    heatmap_cells: e2e ? e2e.cells : 0,
    heatmap_count: e2e ? e2e.count : 0,
    heatmap_type: e2e ? e2e.type : null,
    rest_cells: rest ? rest.cells : 0,
    instances: rows.length,
    unhealthy: rows.filter((tr) => tr.classList.contains('unhealthy')).length,
    roles,
    partitions: document.querySelectorAll('#partitions .partition').length,
    status: (document.getElementById('status-text') || {}).textContent || '',
  };
}

const consoleErrors = [];
let context = null;
let page = null;
let userDataDir = null;
let last = null; // the last probe
let exitCode = 1;
let result = null;

async function safeProbe() {
  try {
    last = await page.evaluate(probe);
  } catch (e) {
    // e.g. the page is navigating; try again at the next poll
    if (!last) last = { error: String(e.message || e) };
  }
  return last;
}

function ready(p) {
  return p && p.updates >= 2 && p.heatmap_cells > 0 && p.instances >= minInstances;
}

function summary(p) {
  return {
    updates: p.updates ?? 0,
    heatmap_cells: p.heatmap_cells ?? 0,
    heatmap_count: p.heatmap_count ?? 0,
    rest_cells: p.rest_cells ?? 0,
    instances: p.instances ?? 0,
    unhealthy: p.unhealthy ?? 0,
    roles: p.roles ?? [],
    partitions: p.partitions ?? 0,
    console_errors: consoleErrors,
  };
}

function whatIsMissing(p) {
  if (!p) return 'the page never answered';
  const missing = [];
  if (!(p.updates >= 2)) missing.push(`${p.updates ?? 0} snapshot(s) drawn, want 2`);
  if (!(p.heatmap_cells > 0)) missing.push('the end-to-end heatmap has no cell with a count');
  if (!(p.instances >= minInstances)) missing.push(`${p.instances ?? 0} instance row(s), want ${minInstances}`);
  if (p.error) missing.push(`dashboard error: ${p.error}`);
  return missing.join('; ');
}

async function main() {
  userDataDir = await mkdtemp(join(tmpdir(), 'gorgon-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1600, height: 2000 },
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(`pageerror: ${err.message}`));

  const deadline = started + timeoutMs;
  log(`opening ${args.url}${args.token ? ' (with a token)' : ''} in ${executablePath}`);
  await page.goto(target.href, { waitUntil: 'load', timeout: Math.max(1000, deadline - Date.now()) });

  // Wait until the page shows live data.
  let lastLog = 0;
  while (!ready(await safeProbe())) {
    if (Date.now() >= deadline) return fail(`timed out after ${timeoutMs} ms: ${whatIsMissing(last)}`);
    if (Date.now() - lastLog >= 1000) {
      lastLog = Date.now();
      log(`waiting: updates=${last.updates ?? 0} e2e_cells=${last.heatmap_cells ?? 0} instances=${last.instances ?? 0} status="${last.status ?? ''}"`);
    }
    await sleep(POLL_MS);
  }
  // One more redraw, so the screenshot shows a page that keeps updating.
  const seen = last.updates;
  log(`ready at update ${seen}; waiting for one more`);
  while ((await safeProbe()).updates <= seen) {
    if (Date.now() >= deadline) return fail(`timed out after ${timeoutMs} ms waiting for the update after ${seen}`);
    await sleep(POLL_MS);
  }
  await page.waitForTimeout(100); // let ECharts paint the frame it was given (lazyUpdate)
  await safeProbe();
  await page.screenshot({ path: args.screenshot, fullPage: true });
  log(`screenshot saved to ${args.screenshot}`);
  result = { ok: true, ...summary(last) };
  exitCode = 0;
}

async function fail(reason) {
  if (page) {
    try {
      await page.screenshot({ path: args.screenshot, fullPage: true });
      log(`screenshot saved to ${args.screenshot}`);
    } catch (e) {
      log(`no screenshot: ${e.message}`);
    }
  }
  result = { ok: false, reason, ...summary(last || {}) };
  if (last && last.error) result.dashboard_error = last.error;
  exitCode = 1;
}

async function cleanup() {
  try {
    if (context) await context.close();
  } catch (e) {
    log(`closing the browser: ${e.message}`);
  }
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    await cleanup();
    process.exit(130);
  });
}

try {
  await main();
} catch (e) {
  // Playwright's messages carry a call log after the first line, with terminal colours.
  const message = String(e.message || e).split('\n')[0].replace(/\u001b\[[0-9;]*m/g, '');
  await fail(`${e.name || 'Error'}: ${message}`);
} finally {
  await cleanup();
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(exitCode);

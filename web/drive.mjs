// drive.mjs: opens an exported dqnkit page in Debian's Chromium (playwright-core) and does what
// a plan says, the way a person would: types observations, presses Reset/Play, and so on.
//
//   node web/drive.mjs PLAN.json RESULT.json
//
// PLAN: {"url": "http://127.0.0.1:PORT/", "chromium": "/usr/bin/chromium", "timeout_ms": 60000,
//        "expect_start": true,
//        "steps": [{"do": "observations", "observations": [[...], ...]},  // or "text": "..." 
//                  {"do": "form", "values": [...]},
//                  {"do": "episode", "seed": 3},        // or "state": [x, x_dot, theta, theta_dot]
//                  {"do": "play_for", "seed": 0, "ms": 1000, "speed": "realtime"},
//                  {"do": "layout"},
//                  {"do": "bench", "observations": [...], "repeats": 15},
//                  {"do": "screenshot", "path": "page.png"}]}
// RESULT: {"results": [one per step], "console": [{type, text}], "page_errors": [...],
//          "requests": [URLs asked for], "blocked": [URLs outside the page's origin, refused]}
import { readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [planPath, resultPath] = process.argv.slice(2);
if (!planPath || !resultPath) {
  console.error('usage: node drive.mjs PLAN.json RESULT.json');
  process.exit(2);
}
const plan = JSON.parse(readFileSync(planPath, 'utf8'));
const timeout = plan.timeout_ms ?? 60000;
const origin = new URL(plan.url).origin; // "null" for file: pages
const allowed = (url) => (origin === 'null' ? url.startsWith('file:') : url.startsWith(origin + '/'));



async function readBatchJson(page, click) {
  await page.evaluate(() => { document.getElementById('batch-json').textContent = ''; });
  await page.click(click);
  await page.waitForFunction(() =>
    document.getElementById('batch-json').textContent !== '' || document.getElementById('form-message').textContent !== '');
  const message = await page.textContent('#form-message');
  if (message) return { error: message };
  return JSON.parse(await page.textContent('#batch-json'));
}

const STEPS = {
  // The JSON box: the observations as text, "Run batch", the results the page shows.
  async observations(page, step) {
    await page.fill('#batch-input', step.text ?? JSON.stringify(step.observations));
    return readBatchJson(page, '#run-batch');
  },
  // The form: one number per field, "Run".
  async form(page, step) {
    for (let i = 0; i < step.values.length; i++) await page.fill(`#obs-${i}`, String(step.values[i]));
    return readBatchJson(page, '#run-one');
  },
  // Seed field and Reset (or, given "state", an episode from that state), speed "as fast as
  // it runs", Play; waits for the episode's end and returns the page's record of it.
  async episode(page, step) {
    if (step.state) {
      await page.evaluate((state) => window.dqnkit.resetToState(state), step.state);
    } else {
      await page.fill('#seed', String(step.seed));
      await page.click('#reset');
    }
    await page.selectOption('#speed', step.speed ?? 'fast');
    // Main-thread tasks over 50 ms while the episode plays (the page should have none).
    await page.evaluate(() => {
      window.__longTasks = [];
      window.__observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__longTasks.push(e.duration);
      });
      window.__observer.observe({ type: 'longtask' });
    });
    const t0 = Date.now();
    await page.click('#play');
    await page.waitForFunction(() => document.getElementById('sim').dataset.done === 'true');
    const wall = Date.now() - t0;
    const longTasks = await page.evaluate(() => { window.__observer.disconnect(); return window.__longTasks; });
    const record = await page.evaluate(() => window.dqnkit.episodes[window.dqnkit.episodes.length - 1]);
    const shown = {
      steps: await page.textContent('#step-count'),
      episode: await page.textContent('#episode-state'),
      action: await page.textContent('#last-action'),
      q_values: await page.textContent('#q-values'),
    };
    return { ...record, shown, wall_ms: wall, long_tasks_ms: longTasks };
  },
  // Reset with the seed, Play at a speed for some milliseconds, then Pause: how far it got.
  async play_for(page, step) {
    await page.fill('#seed', String(step.seed ?? 0));
    await page.click('#reset');
    await page.selectOption('#speed', step.speed ?? 'realtime');
    const t0 = Date.now();
    await page.click('#play');
    await page.waitForTimeout(step.ms);
    await page.click('#play'); // Pause
    const wall = Date.now() - t0;
    await page.waitForTimeout(100); // a step still in flight lands, none after it
    const steps = await page.evaluate(() => window.dqnkit.episodes[window.dqnkit.episodes.length - 1].steps);
    await page.waitForTimeout(200);
    const later = await page.evaluate(() => window.dqnkit.episodes[window.dqnkit.episodes.length - 1].steps);
    return { steps, steps_after_pause: later, wall_ms: wall, button: await page.textContent('#play') };
  },
  // Facts about the page's layout: which sections show, the form's fields.
  async layout(page) {
    return page.evaluate(() => ({
      simulation: !document.getElementById('sim').hidden,
      no_simulation_note: !document.getElementById('no-sim').hidden,
      fields: Array.from(document.querySelectorAll('#obs-fields label span'), (e) => e.textContent),
      title: document.getElementById('env-id').textContent,
    }));
  },
  async bench(page, step) {
    return page.evaluate(([obs, repeats]) => window.dqnkit.benchmark(obs, { repeats }), [step.observations, step.repeats ?? 15]);
  },
  async screenshot(page, step) {
    await page.evaluate(() => new Promise((r) => { window.scrollTo(0, 0); requestAnimationFrame(() => r()); }));
    await page.screenshot({ path: step.path, fullPage: step.full_page ?? false });
    return { path: step.path };
  },
};

async function main() {
  // The flags this machine's closed network needs; playwright adds a fresh --user-data-dir.
  const browser = await chromium.launch({
    executablePath: plan.chromium ?? '/usr/bin/chromium',
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
  });
  const out = { results: [], console: [], page_errors: [], requests: [], blocked: [], browser: browser.version() };
  try {
    const context = await browser.newContext({ viewport: { width: 800, height: 1000 }, serviceWorkers: 'block' });
    // Offline: anything outside the page's own origin is refused and recorded.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (allowed(url) || url.startsWith('blob:') || url.startsWith('data:')) {
        out.requests.push(url);
        return route.continue();
      }
      out.blocked.push(url);
      return route.abort();
    });
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.on('console', (m) => out.console.push({ type: m.type(), text: m.text() }));
    page.on('pageerror', (e) => out.page_errors.push(String(e && e.stack ? e.stack : e)));
    page.on('worker', (w) => w.on('console', (m) => out.console.push({ type: m.type(), text: `[worker] ${m.text()}` })));
    const t0 = Date.now();
    await page.goto(plan.url);
    await page.waitForFunction(() => document.body.dataset.ready === 'true' || document.body.dataset.ready === 'error');
    out.load_ms = Date.now() - t0;
    out.status = await page.textContent('#status');
    out.ready = await page.getAttribute('body', 'data-ready');
  // "expect_start": false opens a page that must refuse to start (and say why in its status).
  if (out.ready !== 'true' && plan.expect_start !== false) throw new Error(`page did not start: ${out.status}`);

    for (const step of plan.steps) {
      out.results.push(await STEPS[step.do](page, step));
    }
  } catch (error) {
    out.error = String(error && error.stack ? error.stack : error);
  } finally {
    await browser.close();
    writeFileSync(resultPath, JSON.stringify(out));
  }
  process.exit(out.error ? 1 : 0);
}

await main();

// app.js: the page's main thread. Reads the contract (contract.json, the JSON stored in the
// model's metadata), starts the inference worker, then offers
//   - for CartPole-v1: the simulation (cartpole.js) driven by the policy, drawn on a canvas;
//   - for every policy: a form built from the contract (observation shape, dtype, bounds,
//     action meanings) and a JSON box for several observations, showing Q-values and actions.
// window.dqnkit exposes the same things to scripts (and to dqnkit's browser test).
'use strict';

(function () {
  const TYPED = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array };
  const $ = (id) => document.getElementById(id);
  const ready = {};
  ready.promise = new Promise((resolve, reject) => {
    ready.resolve = resolve;
    ready.reject = reject;
  });

  // ---- the inference worker ---------------------------------------------------------------
  let worker = null;
  let nextId = 1;
  const pending = new Map();

  function call(message, transfer) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id }, transfer || []);
    });
  }

  function onWorkerMessage(event) {
    const reply = event.data;
    const waiting = pending.get(reply.id);
    if (!waiting) return;
    pending.delete(reply.id);
    if (reply.ok) waiting.resolve(reply);
    else waiting.reject(new Error(reply.error));
  }

  // ---- the contract -----------------------------------------------------------------------
  let contract = null;
  let obsSize = 0;

  function bound(value, i) {
    if (value === null || value === undefined) return null;
    const v = Array.isArray(value) ? value[i] : value;
    const n = typeof v === 'string' ? Number(v.replace('inf', 'Infinity')) : Number(v);
    return Number.isNaN(n) ? null : n;
  }

  function actionName(a) {
    const meanings = contract.action_meanings;
    return meanings && meanings[a] !== undefined ? `${a} (${meanings[a]})` : String(a);
  }

  function indexLabel(flat) {
    const index = [];
    let rest = flat;
    for (let d = contract.obs_shape.length - 1; d >= 0; d--) {
      index.unshift(rest % contract.obs_shape[d]);
      rest = Math.floor(rest / contract.obs_shape[d]);
    }
    return `obs[${index.join(', ')}]`;
  }

  // Flat observations (arrays of numbers, each obs_shape flattened) -> one typed batch.
  function toBatch(rows) {
    const Typed = TYPED[contract.obs_dtype];
    const data = new Typed(rows.length * obsSize);
    rows.forEach((row, i) => {
      if (row.length !== obsSize) {
        throw new Error(`observation ${i} has ${row.length} numbers, the policy takes ${obsSize}`);
      }
      row.forEach((v, j) => {
        if (typeof v !== 'number' || !Number.isFinite(v)) {
          throw new Error(`observation ${i}: ${indexLabel(j)} is not a finite number`);
        }
        if (contract.obs_dtype === 'uint8' && !(Number.isInteger(v) && v >= 0 && v <= 255)) {
          throw new Error(`observation ${i}: ${indexLabel(j)} = ${v} is not an integer 0..255`);
        }
      });
      data.set(row, i * obsSize);
    });
    return data;
  }

  // Q-values and greedy actions of observations: a list of flat arrays (or nested obs_shape).
  async function infer(observations) {
    await ready.promise;
    const rows = observations.map((o) => (Array.isArray(o) ? o.flat(Infinity) : Array.from(o)));
    const data = toBatch(rows);
    const reply = await call({ type: 'run', data, batch: rows.length }, [data.buffer]);
    const n = contract.n_actions;
    const q = [];
    for (let i = 0; i < rows.length; i++) q.push(Array.from(reply.q.subarray(i * n, (i + 1) * n)));
    return { actions: reply.actions, q_values: q };
  }

  // ---- the observation form ---------------------------------------------------------------
  const FORM_LIMIT = 64; // larger observations (frames) are given as JSON only

  function buildForm() {
    const fields = $('obs-fields');
    fields.textContent = '';
    if (obsSize > FORM_LIMIT) {
      $('single').hidden = true;
      return;
    }
    for (let i = 0; i < obsSize; i++) {
      const label = document.createElement('label');
      const low = bound(contract.obs_low, i);
      const high = bound(contract.obs_high, i);
      const input = document.createElement('input');
      input.type = 'number';
      input.id = `obs-${i}`;
      input.step = contract.obs_dtype === 'uint8' ? '1' : 'any';
      if (low !== null && Number.isFinite(low)) input.min = String(low);
      if (high !== null && Number.isFinite(high)) input.max = String(high);
      const mid = low !== null && high !== null && Number.isFinite(low + high) ? (low + high) / 2 : 0;
      input.value = String(contract.obs_dtype === 'uint8' ? Math.round(mid) : mid);
      const name = document.createElement('span');
      name.textContent = indexLabel(i);
      const range = document.createElement('small');
      range.textContent = `[${shortNumber(low)}, ${shortNumber(high)}]`;
      label.append(name, input, range);
      fields.append(label);
    }
  }

  function shortNumber(v) {
    if (v === null) return '?';
    if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
    return String(Number(v.toPrecision(5)));
  }

  function showResults(observations, result) {
    const table = $('batch-results');
    table.textContent = '';
    const head = table.insertRow();
    const headings = ['#', 'action', ...Array.from({ length: contract.n_actions }, (_, a) => `Q[${actionName(a)}]`)];
    for (const text of headings) {
      const th = document.createElement('th');
      th.textContent = text;
      head.append(th);
    }
    result.actions.forEach((action, i) => {
      const row = table.insertRow();
      row.insertCell().textContent = String(i);
      row.insertCell().textContent = actionName(action);
      result.q_values[i].forEach((q, a) => {
        const cell = row.insertCell();
        cell.textContent = q.toFixed(5);
        if (a === action) cell.className = 'chosen';
      });
    });
    // Full precision (float32 values printed exactly) for scripts that read the page.
    $('batch-json').textContent = JSON.stringify({ count: observations.length, ...result });
  }

  async function runForm() {
    try {
      const row = [];
      for (let i = 0; i < obsSize; i++) {
        const text = $(`obs-${i}`).value.trim();
        const v = text === '' ? NaN : Number(text);
        if (!Number.isFinite(v)) throw new Error(`${indexLabel(i)}: type a number`);
        row.push(v);
      }
      showResults([row], await infer([row]));
      setMessage('form-message', '');
    } catch (error) {
      setMessage('form-message', error.message, true);
    }
  }

  function parseBatch(text) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new Error(`not JSON: ${error.message}`);
    }
    if (value && !Array.isArray(value) && Array.isArray(value.observations)) value = value.observations;
    if (!Array.isArray(value) || value.length === 0) {
      throw new Error('give a non-empty JSON list of observations (or {"observations": [...]})');
    }
    // One observation given alone (a flat list of numbers of the right size) is a batch of one.
    if (value.every((v) => typeof v === 'number')) value = [value];
    return value.map((o, i) => {
      if (!Array.isArray(o)) throw new Error(`observation ${i} is not a list`);
      return o.flat(Infinity);
    });
  }

  async function runBatch() {
    try {
      const rows = parseBatch($('batch-input').value);
      showResults(rows, await infer(rows));
      setMessage('form-message', '');
    } catch (error) {
      setMessage('form-message', error.message, true);
    }
  }

  function setMessage(id, text, isError) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle('error', Boolean(isError));
  }

  // ---- the CartPole simulation --------------------------------------------------------------
  const sim = {
    env: null,
    seed: null,
    episodeInSeed: 0,
    record: null,
    running: false,
    stepping: false,
    lastQ: null,
    lastAction: null,
    frameRequested: false,
  };
  const episodes = [];
  const STEP_MS = 20; // CartPole's tau: 50 steps per second in real time

  function canSimulate() {
    return (
      contract.env_id === 'CartPole-v1' &&
      obsSize === 4 &&
      contract.n_actions === 2 &&
      !contract.preprocessing
    );
  }

  function newRecord(how) {
    sim.record = {
      env_id: contract.env_id,
      seed: sim.seed,
      episode_in_seed: sim.episodeInSeed,
      start: how,
      initial_state: sim.env.state.slice(),
      states: [sim.env.state.slice()],
      actions: [],
      q_values: [],
      steps: 0,
      return: 0,
      terminated: false,
      truncated: false,
    };
    episodes.push(sim.record);
    sim.lastQ = null;
    sim.lastAction = null;
    draw();
  }

  // reset(seed=N) when a seed is given (the seed field), like Gymnasium's env.reset(seed=N).
  function resetWithSeed(seed) {
    stop();
    sim.env.reset(seed);
    sim.seed = seed;
    sim.episodeInSeed = 0;
    newRecord('reset(seed)');
  }

  // The next episode of the same generator, like Gymnasium's env.reset().
  function resetNext() {
    stop();
    sim.env.reset();
    sim.episodeInSeed += 1;
    newRecord('reset()');
  }

  // An episode from a given float64 state [x, x_dot, theta, theta_dot].
  function resetToState(state) {
    stop();
    sim.env.setState(state.map(Number));
    sim.seed = null;
    sim.episodeInSeed = 0;
    newRecord('state');
  }

  // One step: the policy's action for the current observation, then the environment's step.
  // At most one step is in flight; a reset while it waits for the worker discards it.
  async function stepOnce() {
    const env = sim.env;
    if (env.done || sim.stepping) return false;
    const record = sim.record;
    sim.stepping = true;
    let result;
    try {
      result = await infer([Array.from(env.observation())]);
    } finally {
      sim.stepping = false;
    }
    if (env.done || sim.record !== record) return false;
    const action = result.actions[0];
    const outcome = env.step(action);
    record.actions.push(action);
    record.q_values.push(result.q_values[0]);
    record.states.push(env.state.slice());
    record.steps = env.elapsedSteps;
    record.return += outcome.reward;
    record.terminated = outcome.terminated;
    record.truncated = outcome.truncated;
    sim.lastQ = result.q_values[0];
    sim.lastAction = action;
    if (env.done) $('sim').dataset.done = 'true';
    requestDraw();
    return !env.done;
  }

  async function play() {
    if (sim.running) return;
    if (sim.env.done) resetNext();
    sim.running = true;
    $('play').textContent = 'Pause';
    const record = sim.record;
    let due = performance.now();
    try {
      while (sim.running && sim.record === record) {
        while (sim.stepping) await sleep(1); // a Step pressed just before still in flight
        if (!sim.running || sim.record !== record) break;
        const more = await stepOnce();
        if (!more) break;
        if ($('speed').value === 'realtime') {
          due += STEP_MS;
          await sleep(Math.max(0, due - performance.now()));
        }
        // In fast mode each step still waits for the worker's reply, so the page stays responsive.
      }
    } catch (error) {
      setMessage('status', `inference failed: ${error.message}`, true);
    } finally {
      if (sim.record === record) {
        sim.running = false;
        $('play').textContent = sim.env.done ? 'Next episode' : 'Play';
      }
    }
  }

  function stop() {
    sim.running = false;
    $('play').textContent = 'Play';
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function requestDraw() {
    if (sim.frameRequested) return;
    sim.frameRequested = true;
    requestAnimationFrame(() => {
      sim.frameRequested = false;
      draw();
    });
  }

  function draw() {
    const canvas = $('canvas');
    const ctx = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    const c = DqnkitCartPole.constants;
    const scale = w / (2 * c.X_THRESHOLD * 1.25); // the track's ends are the termination bounds
    const [x, , theta] = sim.env.state;
    const trackY = h * 0.7;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, w, h);
    // track and the two termination bounds
    ctx.strokeStyle = '#333';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(0, trackY);
    ctx.lineTo(w, trackY);
    ctx.stroke();
    ctx.strokeStyle = '#c0392b';
    for (const edge of [-c.X_THRESHOLD, c.X_THRESHOLD]) {
      const ex = w / 2 + edge * scale;
      ctx.beginPath();
      ctx.moveTo(ex, trackY - 20);
      ctx.lineTo(ex, trackY + 20);
      ctx.stroke();
    }
    // cart
    const cartX = w / 2 + x * scale;
    const cartW = 0.5 * scale;
    const cartH = 0.3 * scale;
    ctx.fillStyle = '#222';
    ctx.fillRect(cartX - cartW / 2, trackY - cartH / 2, cartW, cartH);
    // pole (length 2 * LENGTH), leaning by theta (positive: to the right)
    const poleLen = 2 * c.LENGTH * scale;
    const axleY = trackY - cartH / 4;
    ctx.save();
    ctx.translate(cartX, axleY);
    ctx.rotate(theta);
    ctx.fillStyle = sim.env.done && sim.record && sim.record.terminated ? '#c0392b' : '#ca9865';
    ctx.fillRect(-0.05 * scale, -poleLen, 0.1 * scale, poleLen);
    ctx.restore();
    ctx.fillStyle = '#8184cb';
    ctx.beginPath();
    ctx.arc(cartX, axleY, 0.05 * scale, 0, 2 * Math.PI);
    ctx.fill();
    // push direction
    if (sim.lastAction !== null) {
      ctx.fillStyle = '#2471a3';
      const dir = sim.lastAction === 1 ? 1 : -1;
      const ax = cartX + dir * (cartW / 2 + 8);
      ctx.beginPath();
      ctx.moveTo(ax + dir * 18, trackY);
      ctx.lineTo(ax, trackY - 9);
      ctx.lineTo(ax, trackY + 9);
      ctx.closePath();
      ctx.fill();
    }
    updateReadout();
  }

  function updateReadout() {
    const r = sim.record;
    $('step-count').textContent = r ? String(r.steps) : '0';
    $('episode-return').textContent = r ? String(r.return) : '0';
    $('last-action').textContent = sim.lastAction === null ? '–' : actionName(sim.lastAction);
    $('q-values').textContent = sim.lastQ === null ? '–' : sim.lastQ.map((q) => q.toFixed(4)).join('  ');
    const obs = sim.env.observation();
    $('observation').textContent = Array.from(obs, (v) => v.toFixed(4)).join('  ');
    let where = r ? (r.seed === null ? 'from a given state' : `seed ${r.seed}, episode ${r.episode_in_seed + 1}`) : '';
    let state = '';
    if (r && sim.env.done) state = r.terminated ? ` — terminated at step ${r.steps}` : ` — truncated at step ${r.steps} (time limit)`;
    $('episode-state').textContent = where + state;
    $('sim').dataset.done = String(sim.env.done);
  }

  function download() {
    if (!sim.record) return;
    const blob = new Blob([JSON.stringify(sim.record)], { type: 'application/json' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `cartpole-episode-${sim.record.seed === null ? 'state' : 'seed' + sim.record.seed}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  function readSeed() {
    const text = $('seed').value.trim();
    const seed = Number(text);
    if (text === '' || !Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`seed ${JSON.stringify(text)}: type a non-negative integer`);
    }
    return seed;
  }

  function setUpSimulation() {
    $('sim').hidden = false;
    sim.env = new DqnkitCartPole.CartPole();
    $('reset').onclick = () => {
      try {
        resetWithSeed(readSeed());
        setMessage('sim-message', '');
      } catch (error) {
        setMessage('sim-message', error.message, true);
      }
    };
    $('play').onclick = () => (sim.running ? stop() : play());
    $('step').onclick = async () => {
      stop();
      if (sim.env.done) return;
      try {
        await stepOnce();
      } catch (error) {
        setMessage('status', `inference failed: ${error.message}`, true);
      }
    };
    $('download').onclick = download;
    const params = new URLSearchParams(location.search);
    if (params.has('seed')) $('seed').value = params.get('seed');
    if (params.get('speed') === 'fast') $('speed').value = 'fast';
    resetWithSeed(readSeedOr(0));
  }

  function readSeedOr(fallback) {
    try {
      return readSeed();
    } catch {
      $('seed').value = String(fallback);
      return fallback;
    }
  }

  // ---- start ----------------------------------------------------------------------------------
  function describe() {
    $('env-id').textContent = contract.env_id;
    document.title = `dqnkit policy: ${contract.env_id}`;
    const parts = [
      `observation ${contract.obs_dtype} [${contract.obs_shape.join(', ')}]`,
      `${contract.n_actions} actions${contract.action_meanings ? ': ' + contract.action_meanings.join(', ') : ''}`,
      `trained ${contract.train_steps} steps`,
    ];
    if (contract.eval_return !== null && contract.eval_return !== undefined) {
      parts.push(`evaluation return ${contract.eval_return}`);
    }
    $('summary').textContent = parts.join(' · ');
    $('contract').textContent = JSON.stringify(contract, null, 2);
  }

  async function start() {
    if (location.protocol === 'file:') {
      throw new Error(
        'browsers do not let a page opened from a file load its model or worker: serve this ' +
          'folder, e.g. `python3 -m http.server -d THIS_FOLDER 8000`, and open http://127.0.0.1:8000/'
      );
    }
    const response = await fetch('contract.json');
    if (!response.ok) throw new Error(`contract.json: HTTP ${response.status}`);
    contract = await response.json();
    obsSize = contract.obs_shape.reduce((a, b) => a * b, 1);
    if (!TYPED[contract.obs_dtype]) throw new Error(`unsupported observation dtype ${contract.obs_dtype}`);
    describe();
    worker = new Worker('worker.js');
    worker.onmessage = onWorkerMessage;
    worker.onerror = (event) => ready.reject(new Error(`the worker failed: ${event.message}`));
    await call({
      type: 'load',
      model: new URL('policy.onnx', location.href).href,
      input: contract.input,
      outputs: contract.outputs,
      dtype: contract.obs_dtype,
      shape: contract.obs_shape,
    });
    buildForm();
    $('run-one').onclick = runForm;
    $('run-batch').onclick = runBatch;
    $('batch-file').onchange = async (event) => {
      const file = event.target.files[0];
      if (file) {
        $('batch-input').value = await file.text();
        await runBatch();
      }
    };
    if (canSimulate()) setUpSimulation();
    else $('no-sim').hidden = false;
    ready.resolve();
    setMessage('status', `ready: ONNX Runtime Web ${ortVersion()} (wasm, one thread, in a worker)`);
    document.body.dataset.ready = 'true';
  }

  function ortVersion() {
    return document.body.dataset.ortVersion || '';
  }

  async function benchmark(observations, { repeats = 15 } = {}) {
    await ready.promise;
    const rows = observations.map((o) => (Array.isArray(o) ? o.flat(Infinity) : Array.from(o)));
    const data = toBatch(rows);
    const inWorker = await call({ type: 'bench', data, count: rows.length, repeats });
    // The same, seen from the main thread: one message to the worker and back per observation.
    const roundTripUs = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      for (const row of rows) await infer([row]);
      roundTripUs.push(((performance.now() - t0) * 1000) / rows.length);
    }
    return { workerUs: inWorker.perObservationUs, roundTripUs };
  }

  window.dqnkit = {
    ready: ready.promise,
    get contract() {
      return contract;
    },
    infer,
    benchmark,
    episodes,
    resetWithSeed,
    resetNext,
    resetToState,
    play,
  };

  start().catch((error) => {
    ready.reject(error);
    setMessage('status', `could not start: ${error.message}`, true);
    document.body.dataset.ready = 'error';
  });
  ready.promise.catch(() => {}); // reported in the status line above
})();

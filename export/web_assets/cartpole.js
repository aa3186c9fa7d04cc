// cartpole.js: Gymnasium's CartPole-v1 in JavaScript, step for step.
//
// The physics is gymnasium/envs/classic_control/cartpole.py (Gymnasium 1.x): the same
// constants, the same expressions in the same order (so float64 rounding matches), explicit
// Euler integration, termination when |x| > 2.4 or |theta| > 12 degrees, and the 500-step
// limit that gymnasium.make("CartPole-v1") adds (TimeLimit: truncated at step 500).
//
// reset(seed) draws the initial state as Gymnasium does: a NumPy Generator on PCG64, seeded
// through SeedSequence(seed), then uniform(-0.05, 0.05, size=4). Both are written out below,
// so a page episode with seed N starts where env.reset(seed=N) starts, and the episodes after
// it (reset() without a seed) continue the same stream.
//
// JavaScript numbers are float64 like Gymnasium's state; observations are the state rounded
// to float32, as Gymnasium returns them. Loaded as a classic script (window.DqnkitCartPole),
// in a worker, or from Node (module.exports).
(function (root) {
  'use strict';

  const GRAVITY = 9.8;
  const MASSCART = 1.0;
  const MASSPOLE = 0.1;
  const TOTAL_MASS = MASSPOLE + MASSCART;
  const LENGTH = 0.5; // half the pole's length
  const POLEMASS_LENGTH = MASSPOLE * LENGTH;
  const FORCE_MAG = 10.0;
  const TAU = 0.02; // seconds between state updates
  const THETA_THRESHOLD_RADIANS = (12 * 2 * Math.PI) / 360;
  const X_THRESHOLD = 2.4;
  const MAX_EPISODE_STEPS = 500;

  // One Euler step from state [x, x_dot, theta, theta_dot] (float64) under action 0 or 1.
  function physicsStep(state, action) {
    let [x, xDot, theta, thetaDot] = state;
    const force = action === 1 ? FORCE_MAG : -FORCE_MAG;
    const costheta = Math.cos(theta);
    const sintheta = Math.sin(theta);
    const temp = (force + POLEMASS_LENGTH * (thetaDot * thetaDot) * sintheta) / TOTAL_MASS;
    const thetaacc =
      (GRAVITY * sintheta - costheta * temp) /
      (LENGTH * (4.0 / 3.0 - (MASSPOLE * (costheta * costheta)) / TOTAL_MASS));
    const xacc = temp - (POLEMASS_LENGTH * thetaacc * costheta) / TOTAL_MASS;
    x = x + TAU * xDot;
    xDot = xDot + TAU * xacc;
    theta = theta + TAU * thetaDot;
    thetaDot = thetaDot + TAU * thetaacc;
    const terminated =
      x < -X_THRESHOLD ||
      x > X_THRESHOLD ||
      theta < -THETA_THRESHOLD_RADIANS ||
      theta > THETA_THRESHOLD_RADIANS;
    return { state: [x, xDot, theta, thetaDot], terminated };
  }

  // ---- NumPy's SeedSequence (numpy/random/bit_generator.pyx), 32-bit words -------------
  const MASK32 = 0xffffffffn;
  const INIT_A = 0x43b0d7e5n;
  const MULT_A = 0x931e8875n;
  const INIT_B = 0x8b51f9ddn;
  const MULT_B = 0x58f38dedn;
  const MIX_MULT_L = 0xca01f9ddn;
  const MIX_MULT_R = 0x4973f715n;
  const XSHIFT = 16n;
  const POOL_SIZE = 4;

  function seedSequencePool(seed) {
    // An integer seed becomes its 32-bit words, least significant first ([0] for 0).
    let rest = BigInt(seed);
    const entropy = [];
    do {
      entropy.push(rest & MASK32);
      rest >>= 32n;
    } while (rest > 0n);
    const hashConst = { value: INIT_A };
    const hashmix = (v) => {
      v = (v ^ hashConst.value) & MASK32;
      hashConst.value = (hashConst.value * MULT_A) & MASK32;
      v = (v * hashConst.value) & MASK32;
      return (v ^ (v >> XSHIFT)) & MASK32;
    };
    const mix = (x, y) => {
      let r = (MIX_MULT_L * x - MIX_MULT_R * y) & MASK32;
      return (r ^ (r >> XSHIFT)) & MASK32;
    };
    const pool = [];
    for (let i = 0; i < POOL_SIZE; i++) pool.push(hashmix(i < entropy.length ? entropy[i] : 0n));
    for (let src = 0; src < POOL_SIZE; src++) {
      for (let dst = 0; dst < POOL_SIZE; dst++) {
        if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
      }
    }
    for (let src = POOL_SIZE; src < entropy.length; src++) {
      for (let dst = 0; dst < POOL_SIZE; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]));
    }
    return pool;
  }

  // SeedSequence.generate_state(n, np.uint64): 2n 32-bit words, paired little-endian.
  function generateState64(pool, n) {
    let hashConst = INIT_B;
    const words = [];
    for (let i = 0; i < 2 * n; i++) {
      let v = (pool[i % POOL_SIZE] ^ hashConst) & MASK32;
      hashConst = (hashConst * MULT_B) & MASK32;
      v = (v * hashConst) & MASK32;
      words.push((v ^ (v >> XSHIFT)) & MASK32);
    }
    const out = [];
    for (let i = 0; i < n; i++) out.push(words[2 * i] | (words[2 * i + 1] << 32n));
    return out;
  }

  // ---- NumPy's PCG64 (XSL-RR 128/64) -------------------------------------------------------
  const MASK64 = (1n << 64n) - 1n;
  const MASK128 = (1n << 128n) - 1n;
  const PCG_MULT = (0x2360ed051fc65da4n << 64n) | 0x4385df649fccf645n;

  class PCG64 {
    constructor(seed) {
      const [s0, s1, i0, i1] = generateState64(seedSequencePool(seed), 4);
      const initState = (s0 << 64n) | s1;
      const initSeq = (i0 << 64n) | i1;
      this.inc = ((initSeq << 1n) | 1n) & MASK128;
      this.state = 0n;
      this.advance();
      this.state = (this.state + initState) & MASK128;
      this.advance();
    }

    advance() {
      this.state = (this.state * PCG_MULT + this.inc) & MASK128;
    }

    nextUint64() {
      this.advance();
      const xored = ((this.state >> 64n) ^ this.state) & MASK64;
      const rot = this.state >> 122n;
      return ((xored >> rot) | (xored << ((64n - rot) & 63n))) & MASK64;
    }

    // Generator.random(): 53 random bits scaled to [0, 1).
    nextDouble() {
      return Number(this.nextUint64() >> 11n) * (1.0 / 9007199254740992.0);
    }

    // Generator.uniform(low, high): low + (high - low) * random().
    uniform(low, high) {
      return low + (high - low) * this.nextDouble();
    }
  }

  // CartPole-v1 with its time limit: reset(seed) / reset() and step(action), as Gymnasium.
  class CartPole {
    constructor() {
      this.rng = null;
      this.state = null;
      this.elapsedSteps = 0;
      this.done = true;
    }

    // A seed (a non-negative integer) reseeds the generator, like env.reset(seed=seed);
    // without one the generator goes on (a new one from seed 0 when never seeded).
    reset(seed) {
      if (seed !== undefined && seed !== null) {
        if (!Number.isSafeInteger(seed) || seed < 0) {
          throw new Error(`seed must be a non-negative integer, got ${seed}`);
        }
        this.rng = new PCG64(seed);
      } else if (this.rng === null) {
        this.rng = new PCG64(0);
      }
      const state = [];
      for (let i = 0; i < 4; i++) state.push(this.rng.uniform(-0.05, 0.05));
      return this.setState(state);
    }

    // Starts an episode from a given float64 state [x, x_dot, theta, theta_dot].
    setState(state) {
      if (!Array.isArray(state) || state.length !== 4 || !state.every(Number.isFinite)) {
        throw new Error('a CartPole state is 4 finite numbers');
      }
      this.state = state.slice();
      this.elapsedSteps = 0;
      this.done = false;
      return this.observation();
    }

    observation() {
      return Float32Array.from(this.state);
    }

    step(action) {
      if (action !== 0 && action !== 1) throw new Error(`CartPole action ${action} is not 0 or 1`);
      if (this.state === null) throw new Error('call reset() before step()');
      const next = physicsStep(this.state, action);
      this.state = next.state;
      this.elapsedSteps += 1;
      const truncated = this.elapsedSteps >= MAX_EPISODE_STEPS;
      this.done = next.terminated || truncated;
      return {
        observation: this.observation(),
        reward: 1.0,
        terminated: next.terminated,
        truncated,
      };
    }
  }

  const api = {
    CartPole,
    PCG64,
    physicsStep,
    constants: {
      GRAVITY,
      MASSCART,
      MASSPOLE,
      LENGTH,
      FORCE_MAG,
      TAU,
      THETA_THRESHOLD_RADIANS,
      X_THRESHOLD,
      MAX_EPISODE_STEPS,
    },
  };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.DqnkitCartPole = api;
})(typeof self !== 'undefined' ? self : globalThis);

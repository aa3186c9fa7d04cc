"""Per-observation latency of one ONNX policy in the browser page, in Node.js and in Python.

Run: ``.venv/bin/python -m benchmarks.bench_web [--quick] [--json PATH]`` after
``scripts/setup-web.sh`` (web/'s npm packages and Chromium) and ``npm ci`` in examples/node.

Every runtime runs the same file (the preset's 128-128 CartPole MLP) on the same observations,
one observation per call (batch 1, as a policy acting step by step), both outputs fetched, one
thread. Each timing is the mean over all the observations of one pass; passes are repeated in
rounds that visit every runtime in turn, and the table gives each one's median, quartiles and
minimum over all passes:

- **browser, in the worker**: ONNX Runtime Web (wasm, one thread) in the page's Web Worker,
  ``session.run`` timed inside the worker (``performance.now()``, coarsened to 0.1 ms in a page
  that is not cross-origin isolated, hence whole passes are timed);
- **browser, page round trip**: the page's ``dqnkit.infer`` from the main thread: a message to
  the worker and back around the same ``session.run`` (what each CartPole step waits for);
- **Node, onnxruntime-web**: the same wasm build in Node.js, without a browser;
- **Node, onnxruntime-node**: the native CPU build (examples/node);
- **Python, raw session**: ``InferenceSession.run`` of dqnkit's runtime session;
- **Python, Policy.act**: ``dqnkit.export.runtime.Policy.act`` (checks and all).
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_latency import cartpole_mlp
from dqnkit.export import export_policy
from dqnkit.export.runtime import Policy
from dqnkit.export.web import export_web
from tests.web_page import ROOT, drive, missing_tools

NODE_SCRIPT = ROOT / "benchmarks" / "web_latency.mjs"
NODE_BACKENDS = (("web", "Node, onnxruntime-web"), ("node", "Node, onnxruntime-node"))


def python_passes(policy: Policy, obs: np.ndarray, repeats: int) -> dict[str, list[float]]:
    session = policy.session
    name = session.get_inputs()[0].name
    rows = [obs[i : i + 1] for i in range(len(obs))]
    singles = list(obs)
    outputs = ["q_values", "action"]
    for row in rows:  # warm-up
        session.run(outputs, {name: row})
    raw, act = [], []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for row in rows:
            session.run(outputs, {name: row})
        raw.append((time.perf_counter_ns() - start) / len(rows) / 1e3)
        start = time.perf_counter_ns()
        for one in singles:
            policy.act(one)
        act.append((time.perf_counter_ns() - start) / len(singles) / 1e3)
    return {"Python, raw session": raw, "Python, Policy.act": act}


def node_passes(backend: str, model: Path, obs_file: Path, repeats: int) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(NODE_SCRIPT), backend, str(model), str(obs_file), str(repeats)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def summary(times: list[float]) -> dict[str, float]:
    q1, _, q3 = statistics.quantiles(times, n=4)
    return {"median": statistics.median(times), "p25": q1, "p75": q3, "min": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run (default: off)")
    parser.add_argument("--json", type=Path, help="write every timing here (default: none)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: 5)")
    args = parser.parse_args()
    reason = missing_tools()
    if reason:
        sys.exit(f"bench_web: {reason}")
    count, rounds, repeats = (50, 1, 3) if args.quick else (500, args.rounds, 10)
    net, spec = cartpole_mlp()  # the policy bench_latency times
    scale = np.array([1.0, 1.0, 0.1, 1.0])
    obs = (np.random.default_rng(0).normal(size=(count, 4)) * scale).astype(np.float32)
    timings: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = export_policy(net, spec, Path(tmp) / "export", formats=("onnx",)).files["onnx"]
        site = export_web(model, Path(tmp) / "site")
        obs_file = Path(tmp) / "obs.json"
        obs_file.write_text(json.dumps(obs.tolist()))
        policy = Policy.load(model)
        expected = policy.act(obs).tolist()
        for _ in range(rounds):
            for label, times in python_passes(policy, obs, repeats).items():
                timings.setdefault(label, []).extend(times)
            for backend, label in NODE_BACKENDS:
                result = node_passes(backend, model, obs_file, repeats)
                assert result["actions"] == expected, f"{label} acts differently"
                timings.setdefault(label, []).extend(result["perObservationUs"])
            page = drive(site, [{"do": "bench", "observations": obs.tolist(), "repeats": repeats}])
            bench = page["results"][0]
            timings.setdefault("browser, in the worker", []).extend(bench["workerUs"])
            timings.setdefault("browser, page round trip", []).extend(bench["roundTripUs"])
            browser = page["browser"]
    order = [
        "browser, in the worker",
        "browser, page round trip",
        "Node, onnxruntime-web",
        "Node, onnxruntime-node",
        "Python, raw session",
        "Python, Policy.act",
    ]
    stats = {label: summary(timings[label]) for label in order}
    base = stats["Python, raw session"]["median"]
    print(f"{count} observations, {rounds} rounds x {repeats} passes; µs per observation")
    print("| runtime | median | p25–p75 | min | median / Python raw |")
    print("|---|--:|--:|--:|--:|")
    for label in order:
        s = stats[label]
        print(
            f"| {label} | {s['median']:.1f} | {s['p25']:.1f}–{s['p75']:.1f} | {s['min']:.1f} "
            f"| {s['median'] / base:.1f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        versions = {
            "python": platform.python_version(),
            "chromium": browser,
            "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout,
        }
        args.json.write_text(
            json.dumps(
                {"count": count, "timings_us": timings, "stats": stats, "versions": versions},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

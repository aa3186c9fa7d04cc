"""Latency of one greedy action (and of a batch of 256) for each way to run an exported policy.

Run: ``.venv/bin/python -m benchmarks.bench_latency [--quick]``. Prints a Markdown table of
median microseconds per call over repeats, and each one's ratio to raw ONNX Runtime.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from dqnkit.core import QNetwork
from dqnkit.export import PolicySpec, export_policy
from dqnkit.export.artifacts import _jit_load
from dqnkit.export.graph import PolicyGraph
from dqnkit.export.runtime import Policy, default_session_options
from dqnkit.export.weights import network_config


def median_us(fn: Callable[[], object], *, calls: int, repeats: int) -> float:
    """The median over ``repeats`` of the mean time of ``calls`` calls, in microseconds."""
    for _ in range(calls):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter_ns() - start) / calls / 1e3)
    return statistics.median(times)


def cartpole_mlp() -> tuple[QNetwork, PolicySpec]:
    """The policy the latency benchmarks time: a 128-128 CartPole MLP (seed 0), and its spec."""
    torch.manual_seed(0)
    net = QNetwork(4, 2, hidden=(128, 128)).eval()
    spec = PolicySpec(
        env_id="CartPole-v1",
        obs_shape=(4,),
        obs_dtype="float32",
        n_actions=2,
        network=network_config(net),
        obs_low=[-4.8, "-inf", -0.42, "-inf"],
        obs_high=[4.8, "inf", 0.42, "inf"],
    )
    return net, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (default: off)")
    args = parser.parse_args()
    calls, repeats = (200, 5) if args.quick else (2000, 15)
    torch.set_num_threads(1)  # like the runtime's one-thread session: a fair comparison
    net, spec = cartpole_mlp()
    with tempfile.TemporaryDirectory() as tmp:
        files = export_policy(net, spec, tmp, n_sampled=64, batch_sizes=(1, 64)).files
        graph = PolicyGraph(net)
        scripted = _jit_load(Path(files["torchscript"]))
        program = torch.export.load(str(files["pt2"])).module()
        session = ort.InferenceSession(
            str(files["onnx"]), default_session_options(), providers=["CPUExecutionProvider"]
        )
        policy = Policy.load(files["onnx"])

        rng = np.random.default_rng(0)
        one = rng.normal(size=4).astype(np.float32)
        one_batch = one[None]
        batch = rng.normal(size=(256, 4)).astype(np.float32)

        def torch_act(
            module: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        ) -> Callable[[np.ndarray], object]:
            def act(obs: np.ndarray) -> object:
                with torch.inference_mode():
                    return module(torch.from_numpy(obs))[1].numpy()

            return act

        cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
        for name, module in (
            ("torch eager", graph),
            ("TorchScript", scripted),
            (".pt2 program", program),
        ):
            act = torch_act(module)
            cases[name] = (partial(act, one_batch), partial(act, batch))
        cases["raw ONNX Runtime session.run"] = (
            lambda: session.run(["action"], {"obs": one_batch}),
            lambda: session.run(["action"], {"obs": batch}),
        )
        cases["dqnkit.export.runtime Policy.act"] = (
            lambda: policy.act(one),
            lambda: policy.act(batch),
        )

        results: dict[str, tuple[float, float]] = {}
        for name, (single, batched) in cases.items():
            results[name] = (
                median_us(single, calls=calls, repeats=repeats),
                median_us(batched, calls=max(calls // 10, 20), repeats=repeats),
            )
    raw_single, raw_batch = results["raw ONNX Runtime session.run"]
    print(f"calls per repeat: {calls} (batch: {max(calls // 10, 20)}), repeats: {repeats}")
    print("| how | 1 obs (µs) | vs raw ORT | batch 256 (µs) | vs raw ORT |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (one_us, batch_us) in results.items():
        print(
            f"| {name} | {one_us:.1f} | {one_us / raw_single:.2f}x | {batch_us:.1f} | "
            f"{batch_us / raw_batch:.2f}x |"
        )
    eager_single = results["torch eager"][0]
    runtime_single = results["dqnkit.export.runtime Policy.act"][0]
    print(
        f"runtime single-obs act: {runtime_single / raw_single:.2f}x raw ORT (aim <= 1.5x), "
        f"{eager_single / runtime_single:.2f}x faster than eager (aim >= 3x)"
    )


if __name__ == "__main__":
    main()

"""Start-up time of the command line against ``python -c "import numpy"``, measured in one run.

Run: ``.venv/bin/python -m benchmarks.bench_startup [--repeats 7]``. Each command is a fresh
process; the commands are interleaved round by round so that a loaded machine slows them
alike, and each row is the median over the rounds with its ratio to importing numpy. Also
reports which heavy modules each command imported (torch must be absent from all but none).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def commands(onnx_file: Path) -> dict[str, list[str]]:
    dqnkit = [sys.executable, "-m", "dqnkit.adapters.cli"]
    return {
        'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
        "dqnkit --help": [*dqnkit, "--help"],
        "dqnkit train --help": [*dqnkit, "train", "--help"],
        "dqnkit evaluate x --seed -1 (usage error)": [*dqnkit, "evaluate", "x", "--seed", "-1"],
        "dqnkit play x.onnx --episodes 1": [*dqnkit, "play", str(onnx_file), "--episodes", "1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from dqnkit.export import export_policy
    from tests.test_export import cartpole_policy

    with tempfile.TemporaryDirectory() as tmp:
        net, spec = cartpole_policy(seed=0)
        export_policy(net, spec, tmp, formats=("onnx",), n_sampled=8, batch_sizes=(4,))
        runs = commands(Path(tmp) / "policy.onnx")
        times: dict[str, list[float]] = {name: [] for name in runs}
        env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
        for _ in range(args.repeats):
            for name, argv in runs.items():
                start = time.perf_counter()
                subprocess.run(argv, capture_output=True, env=env, check=False)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times['python -c "import numpy"'])
    print(f"| command | median s ({args.repeats} runs, interleaved) | vs import numpy |")
    print("| --- | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()

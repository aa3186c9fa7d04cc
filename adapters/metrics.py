"""What a run records: metrics.csv, TensorBoard scalars, and the returns plot.

All three are written from the :class:`LoopState` at checkpoints, never between. A resumed
run rewrites its TensorBoard events from the checkpoint's state: the killed process may have
written events past that checkpoint (``purge_step`` only hides those in TensorBoard's viewer,
the files keep them, which is how duplicated steps were seen), or, killed between writing the
checkpoint and its events, fewer than it holds. The checkpoint's rows are the one record.
"""

import csv
import io
from dataclasses import astuple, fields
from pathlib import Path
from typing import Any

from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.loop_state import EpisodeRow, LoopState
from dqnkit.export.files import atomic_write

__all__ = ["METRIC_COLUMNS", "MetricsLog"]

# One row per finished training episode. sps is wall-clock dependent; everything else is a
# pure function of the config and seed.
METRIC_COLUMNS = tuple(f.name for f in fields(EpisodeRow))


class MetricsLog:
    """Writes a run's rows as CSV and TensorBoard scalars, and its plot.

    TensorBoard scalars use CleanRL's names (``charts/episodic_return``, ``losses/td_loss``,
    ``charts/SPS``) and are written only when the ``tensorboard`` package is installed.

    Args:
      run_dir: where the files go.
      resume_step: the step of the checkpoint this process resumed from (0 for a new run);
        on resume the run's TensorBoard event files are removed, to be written anew.
    """

    def __init__(self, run_dir: Path, *, resume_step: int) -> None:
        self.run_dir = run_dir
        self._logged_step = -1
        self._tb: Any = None
        self._tb_checked = False
        if resume_step:
            for events in run_dir.glob("events.out.tfevents.*"):
                events.unlink()

    def write(self, state: LoopState) -> None:
        """Brings metrics.csv and the TensorBoard events up to ``state``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        for row in state.metrics:
            writer.writerow("" if v is None else v for v in astuple(row))
        text = buffer.getvalue()
        path = self.run_dir / "metrics.csv"
        try:
            atomic_write(path, lambda tmp: tmp.write_text(text))
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
        tb = self._writer()
        if tb is not None:
            for row in state.metrics:
                if row.step > self._logged_step:
                    tb.add_scalar("charts/episodic_return", row.episode_return, row.step)
                    tb.add_scalar("charts/episodic_length", row.episode_length, row.step)
                    tb.add_scalar("charts/epsilon", row.epsilon, row.step)
                    if row.td_loss is not None:
                        tb.add_scalar("losses/td_loss", row.td_loss, row.step)
                    tb.add_scalar("charts/SPS", row.sps, row.step)
            for evaluation in state.evaluations:
                if evaluation.step > self._logged_step:
                    tb.add_scalar("eval/mean_return", evaluation.mean_return, evaluation.step)
            tb.flush()
        self._logged_step = state.step

    def _writer(self) -> Any:
        if not self._tb_checked:
            self._tb_checked = True
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the tensorboard extra is not installed
                return None
            self._tb = SummaryWriter(str(self.run_dir))
        return self._tb

    def write_plot(self, path: Path, title: str, state: LoopState) -> None:
        """Each training episode's return and the 100-episode mean against environment steps,
        with the periodic greedy evaluations (mean +- std) drawn on the same axis."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        steps = [row.step for row in state.metrics]
        returns = [row.episode_return for row in state.metrics]
        means = [
            sum(returns[max(0, i - 99) : i + 1]) / len(returns[max(0, i - 99) : i + 1])
            for i in range(len(returns))
        ]
        fig = Figure(figsize=(8, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(steps, returns, linewidth=0.8, alpha=0.6, label="training episode return")
        ax.plot(steps, means, linewidth=2.0, label="mean of the last 100")
        if state.evaluations:
            ax.errorbar(
                [e.step for e in state.evaluations],
                [e.mean_return for e in state.evaluations],
                yerr=[e.std_return for e in state.evaluations],
                fmt="o",
                markersize=4,
                capsize=2,
                label="greedy evaluation (mean ± std)",
            )
        ax.set_xlabel("environment steps")
        ax.set_ylabel("return")
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        try:
            atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from error

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()

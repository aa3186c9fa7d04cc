"""What a run records: metrics.csv, TensorBoard scalars, and the returns plot."""

import csv
import io
from pathlib import Path
from typing import Any

from dqnkit.export.files import atomic_write

__all__ = ["METRIC_COLUMNS", "MetricsLog"]

# One row per finished training episode. sps is wall-clock dependent; everything else is a
# pure function of the config and seed.
METRIC_COLUMNS = (
    "step",
    "episode",
    "episode_return",
    "episode_length",
    "epsilon",
    "td_loss",
    "sps",
)


class MetricsLog:
    """Episode rows kept in memory (they go into checkpoints), written out as CSV and scalars.

    TensorBoard scalars use CleanRL's names (``charts/episodic_return``, ``losses/td_loss``,
    ``charts/SPS``) and are written only when the ``tensorboard`` package is installed.
    """

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]], *, resume_step: int) -> None:
        self.run_dir = run_dir
        self.rows = rows
        self._tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard extra is not installed
            return
        # purge_step drops events a killed run wrote after the checkpoint it resumes from.
        self._tb = SummaryWriter(str(run_dir), purge_step=resume_step or None)

    def episode(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._tb is not None:
            step = row["step"]
            self._tb.add_scalar("charts/episodic_return", row["episode_return"], step)
            self._tb.add_scalar("charts/episodic_length", row["episode_length"], step)
            self._tb.add_scalar("charts/epsilon", row["epsilon"], step)
            if row["td_loss"] != "":
                self._tb.add_scalar("losses/td_loss", row["td_loss"], step)
            self._tb.add_scalar("charts/SPS", row["sps"], step)

    def scalar(self, name: str, value: float, step: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar(name, value, step)

    def write_csv(self, path: Path) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        text = buffer.getvalue()
        atomic_write(path, lambda tmp: tmp.write_text(text))

    def write_plot(self, path: Path, title: str) -> None:
        """The tutorial's duration plot: each episode's return and the 100-episode mean."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        returns = [float(r["episode_return"]) for r in self.rows]
        means = [
            sum(returns[max(0, i - 99) : i + 1]) / len(returns[max(0, i - 99) : i + 1])
            for i in range(len(returns))
        ]
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        ax.plot(returns, linewidth=0.8, alpha=0.6, label="episode return")
        ax.plot(means, linewidth=2.0, label="mean of the last 100")
        ax.set_xlabel("episode")
        ax.set_ylabel("return")
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
        plt.close(fig)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()

"""Plot the loss, lr and metric curves of training runs from their metrics.jsonl logs.

Usage::

    python tools/plot_logs.py RUN_DIR_OR_METRICS_JSONL [...] [--out DIR] [--keys loss_cls ...]

The same as ``detkit plot`` (detkit/cli/plot.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.log_plots import load_curves, plot_logs, plot_series  # noqa: E402
from detkit.cli.plot import main, parse_args  # noqa: E402

__all__ = ["load_curves", "main", "parse_args", "plot_logs", "plot_series"]

if __name__ == "__main__":
    sys.exit(main())

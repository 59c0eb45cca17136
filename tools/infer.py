"""Detect objects in images, folders, videos and webcams; write annotated copies and a json.

Usage::

    python tools/infer.py CONFIG CHECKPOINT INPUT... --out DIR [--score-threshold 0.3] [key.path=value ...]

The same as ``detkit infer`` (detkit/cli/infer.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.infer import main, parse_args  # noqa: E402
# the pipeline, for tools/benchmark_video.py (`import infer`)
from detkit.cli.infer_pipeline import (  # noqa: E402
    PREDICTIONS_FILE,
    InputItem,
    OutputNames,
    Report,
    collect_inputs,
    run_images,
    run_inputs,
    run_video,
    write_json,
)

__all__ = ["PREDICTIONS_FILE", "InputItem", "OutputNames", "Report", "collect_inputs", "main", "parse_args",
           "run_images", "run_inputs", "run_video", "write_json"]

if __name__ == "__main__":
    sys.exit(main())

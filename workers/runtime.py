"""The model runtime of a worker process: its one analyzer (mri.model.analyzer), loaded on first
use and kept for the life of the process. Imported only by worker processes (the tasks' bodies,
the worker's ready signal): it loads TensorFlow.
"""
from __future__ import annotations

import os
import threading

from mri.card import DEFAULT_MODEL_DIR
from mri.model.analyzer import Analyzer

_analyzer: Analyzer | None = None
_lock = threading.Lock()


def get_analyzer() -> Analyzer:
    """The process's analyzer, loaded on first use (model directory: env MODEL_DIR)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = Analyzer(os.environ.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    return _analyzer

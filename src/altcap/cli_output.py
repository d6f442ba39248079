"""How chatty `altcap` is: quiet by default, `-v` for more, `-q` for errors only.

Set once per process from the root command, before any command imports transformers, tqdm or
torch: the libraries read their environment switches at import time, and child processes
(DataLoader workers, `accelerate launch`) inherit them.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

QUIET, NORMAL, VERBOSE = -1, 0, 1

# Library switches per verbosity; setdefault, so a user's own setting wins.
_LIBRARY_ENV = {
    QUIET: {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"},
    # tqdm bars nobody asked for (the GGUF conversion's, transformers' "Loading weights") are off;
    # altcap's own stage bars pass `disable=` themselves and stay.
    NORMAL: {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"},
    VERBOSE: {"TRANSFORMERS_VERBOSITY": "info"},
}
_LEVEL = {QUIET: logging.ERROR, NORMAL: logging.WARNING, VERBOSE: logging.INFO}


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners and notebooks swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class SayOnce(logging.Filter):
    """Drop a log record whose message was already shown (a library warning repeats per batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def configure_output(verbosity: int) -> None:
    """Set log level, warnings and library progress bars for this process and its children.

    Args:
        verbosity: QUIET (log errors only), NORMAL (warnings, each once; altcap's own progress
            bars only) or VERBOSE (info logs, every warning, library progress bars).
    """
    for key, value in _LIBRARY_ENV[verbosity].items():
        os.environ.setdefault(key, value)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if verbosity != VERBOSE:
        handler.addFilter(SayOnce())
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "altcap_output", False)]
    handler.altcap_output = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(_LEVEL[verbosity])
    # Python warnings go through logging, so they obey the level and are said once too.
    logging.captureWarnings(True)
    warnings.simplefilter("default" if verbosity == VERBOSE else "once")

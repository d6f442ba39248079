"""How chatty `altcap` is: quiet by default, `-v` for more, `-q` for errors only; and the one
progress bar a long stage draws (`progress_bar`, `stage_progress`), so every stage's looks the same.

Set once per process from the root command, before any command imports transformers, tqdm or
torch: the libraries read their environment switches at import time, and child processes
(DataLoader workers, `accelerate launch`) inherit them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

QUIET, NORMAL, VERBOSE = -1, 0, 1

# Carries the level to workers that `accelerate launch` starts (they get no -q/-v of their own).
VERBOSITY_ENV = "ALTCAP_VERBOSITY"
# A bar redrawn every 0.1 s fills a log file or CI page with lines; off a terminal it is redrawn
# this rarely, and its final state (count, rate, elapsed) is always written at the end.
NON_TTY_REDRAW_S = 30.0
_state = {"verbosity": NORMAL}

# Library warnings altcap causes on purpose, hidden unless -v. transformers warns that
# no_repeat_ngram_size skips the prompt when generating from inputs_embeds (altcap-mini): that is
# what a caption wants (the prompt's words may be repeated), so the warning says nothing to do.
_EXPECTED_WARNINGS = (r"Passing `no_repeat_ngram_size` with `inputs_embeds`",)

# Library switches per verbosity; setdefault, so a user's own setting wins.
_LIBRARY_ENV = {
    QUIET: {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"},
    # tqdm bars nobody asked for (the GGUF conversion's, transformers' "Loading weights") are off;
    # altcap's own stage bars pass `disable=` themselves and stay.
    NORMAL: {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"},
    VERBOSE: {"TRANSFORMERS_VERBOSITY": "info"},
}
_LEVEL = {QUIET: logging.ERROR, NORMAL: logging.WARNING, VERBOSE: logging.INFO}
_HIDDEN_BY_PYTHON = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners and notebooks swap it), above any open
    progress bar instead of through it."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_line(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def write_line(text: str) -> None:
    """Print a line on stderr; with a progress bar open, above it (the bar is redrawn below)."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None and getattr(tqdm_module.tqdm, "_instances", None):
        tqdm_module.tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


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
    _state["verbosity"] = verbosity
    os.environ[VERBOSITY_ENV] = str(verbosity)
    for key, value in _LIBRARY_ENV[verbosity].items():
        os.environ.setdefault(key, value)
    _set_imported_library_bars(verbosity == VERBOSE)
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
    if verbosity != VERBOSE:
        # "once" alone would also show what Python hides by default (unclosed pipes of
        # pycocoevalcap's Java scorers, libraries' deprecations): nothing a user can act on.
        for category in _HIDDEN_BY_PYTHON:
            warnings.simplefilter("ignore", category)
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)


@contextmanager
def hide_child_chatter(pattern: str) -> Iterator[None]:
    """Drop the lines matching `pattern` that child processes started in this block write to stderr.

    For tools that print a status line per call straight to the terminal (pycocoevalcap's Java
    tokeniser: "PTBTokenizer tokenized N tokens at ..."). Everything else they write, and all of
    it when the block fails, is written to stderr afterwards; under -v nothing is dropped.

    Args:
        pattern: a regular expression matched against each line.
    """
    if details_shown():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)  # the child inherits file descriptor 2, not sys.stderr
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if failed or not re.search(pattern, line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _set_imported_library_bars(enabled: bool) -> None:
    # The switches above are read when a library is imported; one imported already (a notebook,
    # a test process, a second command in one process) is told directly. Nothing new is imported.
    switches = {
        "transformers.utils.logging": ("enable_progress_bar", "disable_progress_bar"),
        "huggingface_hub.utils": ("enable_progress_bars", "disable_progress_bars"),
    }
    for module_name, (enable, disable) in switches.items():
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, enable):
            getattr(module, enable if enabled else disable)()


def read_inherited_verbosity() -> int:
    """The level the launching `altcap` process passed on (NORMAL when none or unreadable)."""
    try:
        value = int(os.environ.get(VERBOSITY_ENV, NORMAL))
    except ValueError:
        return NORMAL
    return value if value in _LEVEL else NORMAL


def notes_shown() -> bool:
    """False under -q: notes and warnings for the user are left out, errors still show."""
    return _state["verbosity"] > QUIET


def details_shown() -> bool:
    """True under -v: a stage's inner phases may show their own bars and details."""
    return _state["verbosity"] >= VERBOSE


def show_note(text: str) -> None:
    """A line for the user on stderr (a summary, a metric not computed); left out under -q.

    Args:
        text: the line, plain text.
    """
    if notes_shown():
        write_line(text)


def progress_bar(
    total: int | None, desc: str, unit: str = "it", initial: int = 0, shown: bool = True, detail: bool = False
) -> Any:
    """The progress bar of a long stage (the one helper, so every stage's bar looks the same).

    Count, rate and ETA on stderr; none under -q. A stage shows one bar; a phase inside it
    (`detail=True`) shows its own only under -v.

    Args:
        total: steps expected (None: unknown, then no ETA).
        desc: what is counted, shown first ("captioning").
        unit: the step's name in the rate ("img" -> img/s).
        initial: steps already done (a resumed run).
        shown: False hides it for this caller (e.g. every process but the main one).
        detail: a phase inside a stage's bar: shown only under -v.

    Returns:
        A tqdm bar (a disabled one when hidden), usable as a context manager.
    """
    from tqdm import tqdm

    level = VERBOSE if detail else NORMAL
    on_terminal = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not (shown and _state["verbosity"] >= level),
        dynamic_ncols=on_terminal,
        mininterval=0.1 if on_terminal else NON_TTY_REDRAW_S,
    )


class StageBar:
    """One bar for a stage made of phases: each phase adds its steps to the total and names itself
    in the description (the add_task/advance calls of rich's Progress, so a phase needs no other)."""

    def __init__(self, bar: Any, desc: str) -> None:
        self.bar = bar
        self.desc = desc

    def add_task(self, description: str, total: int) -> str:
        """Start a phase of `total` steps; returns its name (the `task` of `advance`)."""
        self.bar.total = (self.bar.total or 0) + total
        self.bar.set_description(f"{self.desc}: {description}", refresh=False)
        self.bar.refresh()
        return description

    def advance(self, task: str, steps: int = 1) -> None:
        """Count `steps` done in phase `task`."""
        self.bar.update(steps)


@contextmanager
def stage_progress(desc: str, unit: str = "step") -> Iterator[StageBar]:
    """The one bar of a stage made of phases (see `StageBar`), closed at the end.

    Args:
        desc: the stage's name, shown before the current phase.
        unit: the step's name in the rate.

    Yields:
        The StageBar the phases add their steps to.
    """
    with progress_bar(0, desc, unit) as bar:
        yield StageBar(bar, desc)

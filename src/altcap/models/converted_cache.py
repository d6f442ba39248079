"""A converted copy of a packaged model in the user cache, so only the first start pays for the
conversion: for altcap-mini, dequantising SmolLM2's GGUF, reading the EfficientNet package and
merging the shipped adapters took ~17 s of every `altcap caption` start on 2 cores; the copy is
plain safetensors that load in ~0.4 s (`models/lm_folder.py` reads its language model).

The copy lives in `$ALTCAP_MODEL_CACHE` (default `$XDG_CACHE_HOME/altcap/models`, else
`~/.cache/altcap/models`), in a folder named after a hash of everything the conversion depends on:
the copy's format, altcap's, torch's and transformers' versions, the contents of altcap's packaged
files and the size/mtime of the pip packages' weights. It is written to a temporary folder and renamed into
place (atomic); a copy that fails to load (truncated, corrupt, half-deleted) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CACHE_ENV = "ALTCAP_MODEL_CACHE"
MANIFEST_FILE = "altcap_cache.json"  # written last: a folder without it is incomplete
# Bumped when what a copy holds changes, so older copies are left alone and converted again once
# (2: the tokenizer's added tokens in tokenizer_config.json, `models/lm_folder.py`).
CACHE_FORMAT = 2


def model_cache_root() -> Path:
    """Where converted models are kept (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "altcap" / "models"


def fingerprint_sources(owned: Iterable[Path], installed: Iterable[Path]) -> str:
    """A hash of what a conversion reads, plus the library versions that do the converting.

    Args:
        owned: files altcap ships (hashed by content: they change between altcap commits).
        installed: large weights of versioned pip packages (hashed by name, size and mtime).

    Returns:
        A hex digest.
    """
    digest = hashlib.sha256(f"format={CACHE_FORMAT};".encode())
    for package in ("altcap", "torch", "transformers", "peft"):
        digest.update(f"{package}={_version(package)};".encode())
    for path in sorted(owned):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    for path in sorted(installed):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def load_through_cache(
    name: str,
    key: str,
    convert: Callable[[], tuple[Any, Any]],
    save: Callable[[Any, Any, Path], None],
    load_copy: Callable[[Path], tuple[Any, Any]],
) -> tuple[Any, Any]:
    """The converted model from the cache, converting (once) and storing it when missing or broken.

    Args:
        name: the model's name, the start of its cache folder's name (e.g. "altcap-mini").
        key: `fingerprint_sources` of what the conversion reads.
        convert: builds (model, processor) the slow way.
        save: writes (model, processor) into an empty folder that `load_copy` reads back.
        load_copy: loads (model, processor) from such a folder.

    Returns:
        (model, processor), equal to what `convert` gives.
    """
    folder = model_cache_root() / f"{name}-{key[:20]}"
    broken = False
    if (folder / MANIFEST_FILE).is_file():
        try:
            _check_sizes(folder)
            return load_copy(folder)
        except Exception as err:  # any damage to our own cache means: convert again
            broken = True
            logger.warning("%s: cached copy unreadable (%s: %s); converting again", folder,
                           type(err).__name__, str(err).splitlines()[0] if str(err) else "")
    logger.warning("%s: converting the packaged weights once into %s (later starts load that copy)",
                   name, folder)
    with _quiet_conversion():
        model, processor = convert()
    _store(folder, lambda tmp: save(model, processor, tmp), key, replace=broken)
    return model, processor


def _is_complete(folder: Path) -> bool:
    try:
        _check_sizes(folder)
    except (OSError, ValueError, KeyError):
        return False
    return True


def _check_sizes(folder: Path) -> None:
    expected = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))["sizes"]
    for relative, size in expected.items():
        actual = (folder / relative).stat().st_size
        if actual != size:
            raise OSError(f"{relative} has {actual} bytes, {size} expected")


def _store(folder: Path, write: Callable[[Path], None], key: str, replace: bool = False) -> None:
    """Write into a temporary sibling, record every file's size, then rename it into place.

    `replace`: the copy in `folder` failed to load, so it goes even when its sizes look right
    (damage that keeps a file's size, e.g. overwritten bytes).
    """
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        files = [path for path in sorted(tmp.rglob("*")) if path.is_file()]
        sizes = {path.relative_to(tmp).as_posix(): path.stat().st_size for path in files}
        (tmp / MANIFEST_FILE).write_text(json.dumps({"key": key, "sizes": sizes}, indent=1), encoding="utf-8")
        if not replace and _is_complete(folder):  # another process stored it meanwhile: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(folder, ignore_errors=True)  # a broken copy being replaced
        os.replace(tmp, folder)
    except Exception as err:  # an unwritable copy (full disk, read-only home, a model that cannot be
        # saved) must not stop this load: it only costs the next start its conversion again
        logger.warning("could not store the converted model in %s (%s); it is converted again next time",
                       folder, err)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _quiet_conversion() -> Any:
    """No per-tensor progress bar from transformers while converting: the one log line says it all."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()

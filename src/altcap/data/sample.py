"""The small Flickr8k sample shipped inside the package (see src/altcap/sample/README.md).

`sample_manifest` is the default manifest of the train, caption and evaluate commands, whose modules
import it when `altcap` starts: keep this module's top-level imports to the standard library (CLI
start-up time), and import anything heavier inside the function that needs it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_dir() -> Path:
    """Folder of the embedded sample: Images/, Flickr8k.token.txt, split files, manifest.jsonl, README.md."""
    return Path(str(resources.files("altcap") / "sample"))


def sample_manifest() -> Path:
    """The embedded sample's ready manifest (image paths relative to it).

    Returns:
        Its path; a stage section's `when_null` default (`PipelineSection` writes a path as text).
    """
    return sample_dir() / "manifest.jsonl"


def build_sample(flickr8k_dir: Path, out_dir: Path, per_split: dict[str, int] | None = None) -> list[str]:
    """Re-create the sample: the first N names of each official split list, in the original file formats.

    Args:
        flickr8k_dir: a Flickr8k folder (Flickr8k.token.txt, Flickr_8k.*Images.txt, Images/).
        out_dir: where to write Images/, the token and split files (manifest.jsonl is made by
            `altcap data import flickr8k OUT --out OUT`).
        per_split: images per split list; default train 40, dev 10, test 10.

    Returns:
        The chosen image names.
    """
    from altcap.data.formats_public import FLICKR8K_SPLIT_FILES, FLICKR8K_TOKENS

    counts = per_split or {"train": 40, "val": 10, "test": 10}
    (out_dir / "Images").mkdir(parents=True, exist_ok=True)
    chosen: list[str] = []
    for split, file_name in FLICKR8K_SPLIT_FILES.items():
        names = [n.strip() for n in (flickr8k_dir / file_name).read_text().splitlines() if n.strip()]
        chosen += names[: counts[split]]
        (out_dir / file_name).write_text("".join(f"{n}\n" for n in names[: counts[split]]))
    wanted = set(chosen)
    tokens = (flickr8k_dir / FLICKR8K_TOKENS).read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in tokens if line.split("#", 1)[0] in wanted]
    (out_dir / FLICKR8K_TOKENS).write_text("".join(kept), encoding="utf-8")
    for name in chosen:
        (out_dir / "Images" / name).write_bytes((flickr8k_dir / "Images" / name).read_bytes())
    return chosen

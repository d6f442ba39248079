"""The practice trial's material: never an image that a task or rating trial uses later (issue #28).

A practice image that comes back as a real trial lets a participant's practice answers (and their
first impression) leak into a counted rating. The default practice therefore shows a shipped,
neutral drawing with two hand-written descriptions in the styles of a short and a detailed caption;
a design may instead set study images aside with `practice_images` (removed from every other trial).
"""

from __future__ import annotations

from pathlib import Path

# No captions file can hold this name: `altcap caption` writes manifest paths, never this prefix.
PRACTICE_EXAMPLE_IMAGE = "altcap-practice/example.png"
PRACTICE_EXAMPLE_PATH = Path(__file__).parent / "static" / "practice-example.png"
PRACTICE_EXAMPLE_CAPTIONS = {
    "base": "a cup of coffee on a table",
    "finetuned": "A white mug filled with coffee, its handle on the right, stands on a wooden table in "
    "front of a plain cream wall.",
}


def practice_example_stimulus() -> dict[str, str]:
    """The shipped practice stimulus in the frozen-stimuli format (image, base, finetuned, path)."""
    return {"image": PRACTICE_EXAMPLE_IMAGE, **PRACTICE_EXAMPLE_CAPTIONS, "path": str(PRACTICE_EXAMPLE_PATH)}

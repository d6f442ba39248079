"""Small reference manifests and captions files, written into tmp_path by each test."""

import json
from pathlib import Path

CAPTIONS = {
    "img/dog.jpg": ["A dog runs across the grass.", "A brown dog running on a lawn.", "Dog playing outside."],
    "img/kids.jpg": ["Two children eat ice cream on a bench.", "Kids with ice cream in a park."],
    "img/bike.jpg": ["A man rides a bicycle down the street.", "A cyclist on a city road."],
    "img/pasta.jpg": ["A plate of pasta with tomato sauce.", "Spaghetti on a white plate."],
    "img/sign.jpg": ["A red stop sign at a corner.", "A stop sign next to a road."],
    "img/rain.jpg": ["A woman holds an umbrella in the rain.", "Person with an umbrella on a rainy day."],
}
GOOD = {
    "img/dog.jpg": "A dog running on the grass.",
    "img/kids.jpg": "Two kids eating ice cream on a bench.",
    "img/bike.jpg": "A man riding a bike on the street.",
    "img/pasta.jpg": "A plate of spaghetti.",
    "img/sign.jpg": "A stop sign that says STOP.",
    "img/rain.jpg": "A woman with an umbrella in the rain.",
}
WORSE = {image: "An image of a thing." for image in GOOD}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_manifest(path: Path, split: str = "test") -> Path:
    rows = [
        {
            "image": image,
            "captions": caps,
            "split": split,
            "metadata": {"ocr_text": "STOP"} if "sign" in image else {},
        }
        for image, caps in CAPTIONS.items()
    ]
    return write_jsonl(path, rows)


def write_captions(path: Path, captions: dict[str, str]) -> Path:
    return write_jsonl(
        path, [{"image": i, "caption": c, "model_id": "test/model"} for i, c in captions.items()]
    )

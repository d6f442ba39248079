"""How long `altcap evaluate` takes on 1,000 Flickr8k test images, all metrics but SPICE.

Predictions are human captions, so no model is needed: for each image, reference caption #0 is the
"prediction". With `--refs-per-image 4` (held-out, realistic scores) the references are captions
#1-#4; with `--refs-per-image 5` (the default, the size the target is stated for) they are all five
captions, so the prediction is also one of its own references and the scores are inflated:
only the time is meaningful then. The run includes PTB tokenisation, multi- and single-reference
COCO metrics, FGD with the bundled encoder, 1,000 bootstrap resamples (200 for FGD) and writing
every output file. Target: under 60 s on the 2-core dev machine.

    python -m benchmarks.evaluate_speed [--refs-per-image 4] [--n-images 1000]

Prints a summary and writes benchmarks/results/evaluate_speed.json.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from altcap.metrics import coco, evaluate, fgd
from altcap.metrics.config import EvaluateConfig
from benchmarks.common import FLICKR8K, RESULTS_DIR, collect_versions, describe_hardware, write_report

RESULTS = RESULTS_DIR / "evaluate_speed.json"


def write_inputs(folder: Path, n_images: int, refs_per_image: int) -> tuple[Path, Path]:
    """A manifest of the first n Flickr8k test images and a captions file of caption #0."""
    captions = collections.defaultdict(list)
    for line in (FLICKR8K / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        captions[key.split("#")[0]].append(caption)
    images = (FLICKR8K / "Flickr_8k.testImages.txt").read_text().split()[:n_images]
    first_ref = 5 - refs_per_image  # 4 refs: skip caption #0, which is the prediction
    refs, preds = folder / "manifest.jsonl", folder / "heldout.jsonl"
    with refs.open("w", encoding="utf-8") as r, preds.open("w", encoding="utf-8") as p:
        for image in images:
            record = {"image": f"Images/{image}", "captions": captions[image][first_ref:], "split": "test"}
            r.write(json.dumps(record) + "\n")
            p.write(
                json.dumps({"image": f"Images/{image}", "caption": captions[image][0], "model_id": "human"})
            )
            p.write("\n")
    return refs, preds


def wrap_timed(owner: Any, attribute: str, label: Any, seconds: dict[str, float]) -> None:
    """Replace owner.attribute by a wrapper adding its run time to seconds[label(args)]."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            key = label(args) if callable(label) else label
            seconds[key] += time.perf_counter() - start

    setattr(owner, attribute, timed)


def bootstrap_label(args: tuple) -> str:
    """'bootstrap <kind>' from the statistic class being resampled."""
    kind = {"BleuStatistic": "BLEU", "MeteorStatistic": "METEOR", "FgdStatistic": "FGD"}
    return "bootstrap " + kind.get(type(args[0]).__name__, "mean metrics (ROUGE-L, CIDEr-D)")


def instrument(seconds: dict[str, float]) -> None:
    """Time each metric where run_evaluate calls it."""
    wrap_timed(evaluate, "tokenize_captions", "PTB tokenise", seconds)
    wrap_timed(coco, "score_bleu", "BLEU-1..4", seconds)
    wrap_timed(coco, "score_meteor", "METEOR (incl. JVM start on first call)", seconds)
    wrap_timed(coco.Rouge, "compute_score", "ROUGE-L", seconds)
    wrap_timed(coco.Cider, "compute_score", "CIDEr-D", seconds)
    wrap_timed(evaluate, "load_encoder", "FGD load encoder", seconds)
    wrap_timed(evaluate, "embed_sentences", "FGD embed", seconds)
    wrap_timed(fgd.FgdStatistic, "value", "FGD value", seconds)
    wrap_timed(evaluate, "replicate_statistic", bootstrap_label, seconds)
    wrap_timed(evaluate, "write_outputs", "write outputs", seconds)


def main(argv: list[str] | None = None) -> Path:
    """Time `run_evaluate` on Flickr8k test captions, print per-step seconds, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--refs-per-image", type=int, choices=(4, 5), default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seconds: dict[str, float] = collections.defaultdict(float)
    instrument(seconds)
    hardware = describe_hardware()
    with tempfile.TemporaryDirectory() as tmp:
        refs, preds = write_inputs(Path(tmp), args.n_images, args.refs_per_image)
        cfg = EvaluateConfig(refs=refs, pred=[preds], out=Path(tmp) / "out", spice=False)
        start = time.perf_counter()
        metrics = evaluate.run_evaluate(cfg)
        total_s = time.perf_counter() - start
    corpus = {k: round(v["value"], 4) for k, v in metrics["systems"]["heldout"]["corpus"].items()}
    result = {
        "benchmark": "altcap evaluate, all metrics but SPICE",
        "n_images": args.n_images,
        "refs_per_image": args.refs_per_image,
        "predictions": "Flickr8k reference caption #0 of each image"
        + (" (held out of the references)" if args.refs_per_image == 4 else " (also among the references)"),
        "bootstrap_samples": cfg.bootstrap_samples,
        "fgd_bootstrap_samples": cfg.fgd_bootstrap_samples,
        "seconds_per_step": {k: round(v, 2) for k, v in seconds.items()},
        "total_seconds": round(total_s, 2),
        "target_seconds": 60,
        "corpus_scores": corpus,
        "hardware": hardware,
        "versions": collect_versions(["sentence-transformers", "scipy"]),
    }
    write_report(args.out, result)
    for step, spent in result["seconds_per_step"].items():
        print(f"{step:45s} {spent:7.2f} s")
    load = hardware["load_average_1m"]
    print(f"{'total':45s} {total_s:7.2f} s  (target < 60 s; load average at start {load})")
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()

"""`altcap memo`: renders, fits in four pages, every number traceable to the inputs, SIMULATED stamps."""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import typer
from PIL import Image
from pypdf import PdfReader
from typer.testing import CliRunner

from altcap.analysis.commands import AnalysisConfig, run_analyze, run_simulate
from altcap.analysis.simulate import SimulationConfig
from altcap.report.commands import MemoConfig, memo_command, run_memo
from altcap.report.memo import SAMPLE_RULE, describe_validity, pick_samples
from altcap.report.metric_context import CITATIONS, describe_metric_context
from altcap.report.samples import CASE_LABELS, THUMBNAIL_PX, build_samples
from altcap.report.training import describe_training, read_train_run

# A number not glued to a word (so BLEU-4, CIDEr-D, hashes and ids are not numbers).
NUMBER = re.compile(r"(?<![\w.\-])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.]|-\d)")


def write_images(folder: Path, n_images: int) -> list[str]:
    """Small distinct JPEGs (absolute paths), standing in for a run's test images."""
    folder.mkdir()
    paths = []
    for j in range(n_images):
        path = folder / f"photo_{j:02d}.jpg"
        Image.new("RGB", (320, 240), (10 * j, 200 - 8 * j, 90)).save(path)
        paths.append(str(path))
    return paths


def write_train_run(train: Path) -> None:
    """A training run folder as `altcap train` writes it, inside an `altcap run` folder."""
    train.mkdir(parents=True)
    provenance = {
        "model_id": "tiny/blip",
        "family": "blip",
        "manifest": "data/manifest.jsonl",
        "manifest_sha256": "ab" * 32,
        "versions": {"torch": "2.13.0+cpu"},
        "train_examples": 640,
        "val_examples": 80,
        "total_steps": 120,
        "final_step": 120,
        "epochs_completed": 3,
        "best_val_loss": 1.8734,
        "precision_used": "fp32",
        "lora_targets": ["query", "value"],
        "config": {
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
            "optim": {"lr": 3e-05},
            "batch_size": 8,
            "grad_accum_steps": 4,
            "model": {"device": "cpu"},
        },
    }
    (train / "provenance.json").write_text(json.dumps(provenance))
    rows = [{"step": 110, "loss": 2.25, "samples_per_s": 41.5}, {"step": 120, "loss": 2.125, "val_loss": 1.9}]
    (train / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (train.parent / ".stages").mkdir()
    (train.parent / ".stages" / "train.json").write_text(json.dumps({"fingerprint": "x", "seconds": 73.25}))
    fig, ax = plt.subplots()
    ax.plot([3, 2, 1])
    fig.savefig(train / "loss_curves.png")
    plt.close(fig)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("memo")
    images = write_images(root / "images", 12)
    run_simulate(SimulationConfig(n_participants=20, effect=0.8, seed=2, images=images, out=root / "sim"))
    run_analyze(
        AnalysisConfig(
            export_dir=root / "sim",
            metrics=root / "sim" / "metrics" / "metrics.json",
            out=root / "analysis",
            n_boot=200,
        )
    )
    write_train_run(root / "run" / "03_train")
    return root


@pytest.fixture(scope="module")
def memo(study: Path) -> Path:
    cfg = MemoConfig(
        analysis=study / "analysis" / "analysis.json",
        metrics=study / "sim" / "metrics" / "metrics.json",
        train_dir=study / "run" / "03_train",
        out=study / "memo",
    )
    return run_memo(cfg).parent


def collect_input_numbers(paths: list[Path]) -> tuple[set[str], list[float]]:
    """Raw numeric tokens of the input files' text and their numeric values."""
    tokens = {t for p in paths for t in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", p.read_text())}
    return tokens, [float(t) for t in tokens]


HEX_DIGEST = re.compile(r"`[0-9a-f]{12,64}`")


def strip_non_results(text: str) -> str:
    """The memo's fixed citations carry years and its digests are hex identifiers, not results: drop
    both before tracing numbers (a digest such as `3789e0004762` would otherwise read as 3789e4762)."""
    for citation in CITATIONS:
        text = text.replace(citation, "")
    return HEX_DIGEST.sub("", text)


def is_traceable(token: str, raw: set[str], values: list[float]) -> bool:
    if token in raw:
        return True
    number = float(token)
    decimals = len(token.split(".")[1].split("e")[0]) if "." in token else 0
    tolerance = 0.5 * 10**-decimals + 1e-12
    return any(math.isclose(number, v, rel_tol=5e-3) or abs(number - v) <= tolerance for v in values)


@pytest.mark.slow
def test_memo_files_and_page_limit(memo: Path) -> None:
    assert sorted(p.name for p in memo.iterdir()) == [
        "likert.png",
        "loss.png",
        "memo.html",
        "memo.md",
        "memo.pdf",
        "provenance.json",
        "sample_1.jpg",
        "sample_2.jpg",
        "sample_3.jpg",
        "validity.png",
    ]
    assert max(Image.open(memo / "sample_1.jpg").size) == THUMBNAIL_PX
    pages = PdfReader(memo / "memo.pdf").pages
    assert 1 <= len(pages) <= 4
    # likert, validity and loss charts plus the three sample thumbnails are embedded in the PDF
    # WeasyPrint shares one resource dictionary between pages, so count distinct images
    sizes = sorted({(image.name, image.image.size) for page in pages for image in page.images})
    assert len(sizes) == 6 and sum(size == (THUMBNAIL_PX, 120) for _, size in sizes) == 3
    assert all("SIMULATED" in page.extract_text() for page in pages)
    assert json.loads((memo / "provenance.json").read_text())["pdf_engine"] == "weasyprint"


@pytest.mark.slow
def test_memo_content(memo: Path) -> None:
    text = (memo / "memo.md").read_text()
    assert text.startswith("> **SIMULATED DATA")
    assert "## Recommendation: " in text and "![Training and validation loss](loss.png)" in text
    assert SAMPLE_RULE in text
    assert "per-image usefulness gain" in text and "Kendall tau" in text
    assert "SPICE not computed" in text
    # issue #14: task accuracy is a decision criterion, shown with its number and margin
    assert re.search(
        r"\| task accuracy drop \(base - fine-tuned\) \| \*\*(met|not met|inconclusive)\*\* \| -?\d", text
    )
    assert (
        "| hallucination rate rise (fine-tuned - base) | **not assessed** | not collected in this study |"
        in text
    )
    assert "No power analysis was given" in text
    assert "median per-participant gain of at least 0.5 points, CIDEr-D and SPICE improve" in text


@pytest.mark.slow
def test_memo_shows_what_was_trained(memo: Path) -> None:
    text = (memo / "memo.md").read_text()
    for expected in (
        "**base model**: tiny/blip (family blip)",
        "`data/manifest.jsonl` (sha256 `abababababab`)",
        "r=16; alpha=32; dropout=0.05; targets query, value",
        "120 optimizer steps of 120 planned, 3 epochs completed, batch 8 x 4 accumulation steps, lr 3.00e-05",
        "best validation loss 1.87; last logged training loss 2.12 (step 120)",
        "wall time 73.2 s (pipeline train stage",
        "device cpu (torch 2.13.0+cpu), precision fp32, last logged throughput 41.5 samples/s",
    ):
        assert expected in text, expected


@pytest.mark.slow
def test_samples_show_the_evaluated_captions_and_thumbnails(memo: Path, study: Path) -> None:
    text = (memo / "memo.md").read_text()
    rows = [json.loads(line) for line in (study / "sim" / "metrics" / "per_image.jsonl").open()]
    images, _ = pick_samples(rows)
    assert len(images) == 3
    for k, image in enumerate(images, start=1):
        row = next(line for line in text.splitlines() if f"`{Path(image).name}`" in line)
        assert f"](sample_{k}.jpg)" in row and CASE_LABELS[k - 1] in row
        for system in ("base", "finetuned"):
            caption = next(r["caption"] for r in rows if r["image"] == image and r["system"] == system)
            assert f"| {caption} |" in row


@pytest.mark.slow
def test_every_number_in_memo_comes_from_inputs(memo: Path) -> None:
    inputs = [Path(p) for p in json.loads((memo / "provenance.json").read_text())["inputs_sha256"]]
    assert {p.name for p in inputs} >= {"analysis.json", "metrics.json", "per_image.jsonl", "train_log.jsonl"}
    raw, values = collect_input_numbers(inputs)
    tokens = NUMBER.findall(strip_non_results((memo / "memo.md").read_text()))
    assert len(tokens) > 40
    untraced = [t for t in tokens if not is_traceable(t, raw, values)]
    assert untraced == []


def test_number_check_catches_an_invented_number(study: Path) -> None:
    raw, values = collect_input_numbers([study / "run" / "03_train" / "provenance.json"])
    assert is_traceable("1.87", raw, values) and is_traceable("640", raw, values)
    assert not is_traceable("12345.678", raw, values)
    assert NUMBER.findall("BLEU-4 CIDEr-D sha 4bdeff8cf02b r=16 -0.05 and 3") == ["16", "-0.05", "3"]
    assert NUMBER.findall(strip_non_results("sha256 `3789e0004762`, 0.25")) == ["0.25"]


def test_real_inputs_are_not_stamped(study: Path, tmp_path: Path) -> None:
    analysis = json.loads((study / "analysis" / "analysis.json").read_text())
    analysis["simulated"] = False
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    run_memo(MemoConfig(analysis=tmp_path / "analysis.json", out=tmp_path / "memo"))
    text = (tmp_path / "memo" / "memo.md").read_text()
    assert "SIMULATED" not in text and "No metrics.json was given." in text
    assert all("SIMULATED" not in p.extract_text() for p in PdfReader(tmp_path / "memo" / "memo.pdf").pages)


def test_sample_rule_picks_deciles() -> None:
    rows = [
        {"system": s, "image": f"im{j:02d}", "CIDEr-D": (j if s == "finetuned" else 0.0)}
        for j in range(21)
        for s in ("base", "finetuned")
    ]
    images, rule = pick_samples(rows)
    assert images == ["im02", "im10", "im18"] and rule == SAMPLE_RULE
    assert pick_samples(rows[:4])[0] == []


def test_validity_sentence_names_the_metric_and_says_how_sure() -> None:
    def validity(ci_low: float) -> dict:
        row = {"tau": 0.42, "ci_low": ci_low, "ci_high": 0.7, "n_images": 40}
        return {"outcomes": {"usefulness": {"CIDEr-D": row}}, "best": {"usefulness": {"metric": "CIDEr-D"}}}

    assert describe_validity(validity(0.15)) == (
        "CIDEr-D tracked the per-image usefulness gain most closely of the automatic metrics, a moderate "
        "relation (Kendall tau 0.42, 95% CI 0.15 to 0.7, 40 images)."
    )
    assert describe_validity(validity(-0.05)).startswith(
        "No automatic metric clearly tracked the per-image usefulness gain: the highest Kendall tau, "
        "CIDEr-D's, is moderate and its CI includes zero"
    )
    assert describe_validity(None).startswith("No metric-validity analysis was possible")


def test_lora_targets_given_as_a_regex_are_quoted_whole(tmp_path: Path) -> None:
    write_train_run(tmp_path / "run" / "03_train")
    train = read_train_run(tmp_path / "run" / "03_train")
    train.provenance["lora_targets"] = r"(.*\.)?language_model\.(.*\.)?(q_proj|v_proj)"
    lora = dict(describe_training(train))["LoRA"]
    assert (
        lora
        == r"r=16; alpha=32; dropout=0.05; targets matching `(.*\.)?language_model\.(.*\.)?(q_proj|v_proj)`"
    )


def test_missing_and_unreadable_images_get_a_note(tmp_path: Path) -> None:
    (tmp_path / "manifest_dir" / "imgs").mkdir(parents=True)
    Image.new("RGB", (400, 100)).save(tmp_path / "manifest_dir" / "imgs" / "ok.jpg")
    (tmp_path / "broken.jpg").write_text("not an image")
    images = ["imgs/ok.jpg", "imgs/gone.jpg", str(tmp_path / "broken.jpg")]
    rows = [
        {"system": s, "image": im, "caption": f"{s} {k}", "CIDEr-D": float(k) * (s == "finetuned")}
        for k, im in enumerate(images)
        for s in ("base", "finetuned")
    ]
    (tmp_path / "memo").mkdir()
    samples, rule = build_samples(rows, {}, [tmp_path / "manifest_dir"], tmp_path / "memo")
    assert rule == SAMPLE_RULE
    by_image = {s["image"]: s for s in samples}
    assert by_image["imgs/ok.jpg"]["thumbnail"] == "sample_1.jpg"
    assert Image.open(tmp_path / "memo" / "sample_1.jpg").size == (THUMBNAIL_PX, 40)
    assert by_image["imgs/gone.jpg"]["note"] == "image file not found"
    assert by_image[str(tmp_path / "broken.jpg")]["note"].startswith("image not readable")
    assert sorted(p.name for p in (tmp_path / "memo").iterdir()) == ["sample_1.jpg"]


def test_power_analysis_is_reported(study: Path, tmp_path: Path) -> None:
    power = {
        "power": {"k": 412, "n": 500, "share": 0.824, "ci_low": 0.788, "ci_high": 0.855},
        "alpha": 0.05,
        "config": {"n_participants": 30, "effect": 0.5},
    }
    (tmp_path / "power.json").write_text(json.dumps(power))
    cfg = MemoConfig(
        analysis=study / "analysis" / "analysis.json", power=tmp_path / "power.json", out=tmp_path / "m"
    )
    run_memo(cfg)
    text = (tmp_path / "m" / "memo.md").read_text()
    assert "Planned power (simulation, run before the study): 0.824 (95% CI 0.788 to 0.855)" in text
    assert "log-odds shift of 0.5 with 30 participants at one-sided alpha 0.05, from 500 simulated" in text


def test_memo_command_errors_name_the_file(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("memo")(memo_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(
        app, ["memo", "--analysis", str(tmp_path / "missing.json"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2 and "missing.json" in result.output



def planted_metrics(base_words: float, tuned_words: float, length_ci: tuple[float, float]) -> dict:
    """A metrics.json with a fine-tuned CIDEr-D and BLEU-4 gain, lengths, CHAIR and scene-graph F1."""

    def entry(value: float, low: float, high: float) -> dict:
        return {"value": value, "ci_low": low, "ci_high": high}

    def system(words: float, cider: float, chair_i: float, graph: float) -> dict:
        return {
            "corpus": {"CIDEr-D": entry(cider, cider - 0.03, cider + 0.03), "BLEU-4": entry(0.2, 0.19, 0.21)},
            "length": {"mean_words": words, "median_words": words - 0.1, "q1_words": 7.0, "q3_words": 13.0},
            "hallucination_rate": {
                "CHAIR-i": entry(chair_i, 0.041, 0.083),
                "CHAIR-s": entry(0.117, 0.096, 0.139),
            },
            "scene_graph_f1": {"label": "scene-graph F1 (not SPICE)", **entry(graph, 0.211, 0.243)},
        }

    def comparison(metric: str, diff: float, low: float, high: float) -> dict:
        test = "paired bootstrap (n=1000)"
        return {
            "a": "base",
            "b": "finetuned",
            "metric": metric,
            "diff": diff,
            "ci_low": low,
            "ci_high": high,
            "p_value": 0.003,
            "test": test,
        }

    return {
        "systems": {
            "base": system(base_words, 0.501, 0.062, 0.227),
            "finetuned": system(tuned_words, 0.541, 0.057, 0.232),
        },
        "comparisons": [comparison("CIDEr-D", 0.04, 0.015, 0.066), comparison("BLEU-4", 0.025, 0.013, 0.036)],
        "length_comparisons": [
            {
                "a": "base",
                "b": "finetuned",
                "diff_words": tuned_words - base_words,
                "ci_low": length_ci[0],
                "ci_high": length_ci[1],
                "p_value": 0.001,
            }
        ],
        "length_adjusted": [
            {
                "a": "base",
                "b": "finetuned",
                "metric": "BLEU-4",
                "raw_diff": 0.025,
                "raw_ci_low": 0.013,
                "raw_ci_high": 0.036,
                "adjusted_diff": 0.004,
                "adjusted_ci_low": -0.008,
                "adjusted_ci_high": 0.016,
                "explained_by_length": True,
            },
            {
                "a": "base",
                "b": "finetuned",
                "metric": "CIDEr-D",
                "raw_diff": 0.04,
                "raw_ci_low": 0.015,
                "raw_ci_high": 0.066,
                "adjusted_diff": 0.052,
                "adjusted_ci_low": 0.021,
                "adjusted_ci_high": 0.08,
                "explained_by_length": False,
            },
        ],
        "missing": {},
    }


def test_metrics_section_says_what_the_metrics_can_and_cannot_tell(study: Path, tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps(planted_metrics(11.1, 9.1, (-2.31, -1.72))))
    run_memo(
        MemoConfig(
            analysis=study / "analysis" / "analysis.json",
            metrics=tmp_path / "metrics.json",
            out=tmp_path / "memo",
        )
    )
    text = (tmp_path / "memo" / "memo.md").read_text()
    section = text.split("## Automatic metrics")[1].split("## User study")[0]
    assert "secondary to the usefulness the user study measures" in section
    assert all(citation in section for citation in CITATIONS)
    assert (
        "| finetuned | 9.1 (9) | 0.057 (0.041-0.083) | 0.117 (0.096-0.139) | 0.232 (0.211-0.243) |" in section
    )
    assert "scene-graph F1, not SPICE" in section and "it agrees with SPICE is unknown" in section
    assert (
        "The fine-tuned model's gain on CIDEr-D, BLEU-4 comes with shorter captions: 9.1 words on average "
        "against 11.1 for the base model (difference -2, 95% CI -2.31 to -1.72)"
    ) in section
    assert "The BLEU-4 change (0.025, 95% CI 0.013 to 0.036) is explained by caption length alone" in section
    assert "The CIDEr-D change" not in section  # its adjusted CI excludes 0
    raw, values = collect_input_numbers([tmp_path / "metrics.json", study / "analysis" / "analysis.json"])
    untraced = [t for t in NUMBER.findall(strip_non_results(text)) if not is_traceable(t, raw, values)]
    assert untraced == []
    assert len(PdfReader(tmp_path / "memo" / "memo.pdf").pages) <= 4


def test_no_shorter_caption_sentence_when_lengths_do_not_differ() -> None:
    same_length = describe_metric_context(planted_metrics(10.0, 10.2, (-0.3, 0.7)))
    assert not any("shorter captions" in s for s in same_length["sentences"])
    assert any("explained by caption length alone" in s for s in same_length["sentences"])
    old = describe_metric_context({"systems": {"base": {"corpus": {}}}, "comparisons": []})
    assert old["rows"] == [] and "older `altcap evaluate`" in old["sentences"][0]
    assert "MacLeod" in describe_metric_context(None)["statement"]
    measured = planted_metrics(10.0, 10.2, (-0.3, 0.7))
    agreement = {"kendall_tau": 0.412, "n_images": 1000, "status": "measured on these captions"}
    measured["systems"]["finetuned"]["scene_graph_f1"]["agreement_with_spice"] = agreement
    sentence = describe_metric_context(measured)["sentences"][-1]
    assert sentence.endswith("with SPICE on these captions: finetuned Kendall tau 0.412 over 1000 images.")


def test_weasyprint_import_leaves_truncated_images_refused() -> None:
    """WeasyPrint sets Pillow's LOAD_TRUNCATED_IMAGES at import; the memo's PDF must not make later
    image loads in the same process (a resumed `altcap run`, the test suite) accept truncated photos."""
    from PIL import ImageFile

    from altcap.report.pdf import import_weasyprint

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with contextlib.suppress(ImportError, OSError):  # no pango: nothing imported, nothing changed
        import_weasyprint()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_sample_thumbnails_come_through_the_one_image_loader(tmp_path: Path) -> None:
    """#27: a phone photo stored sideways (EXIF orientation 6) and a transparent PNG appear in the
    memo as every stage reads them: upright, on white."""
    from altcap.report.samples import write_thumbnail

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (400, 100), (10, 200, 10)).save(tmp_path / "sideways.jpg", exif=exif)
    Image.new("RGBA", (200, 200), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert write_thumbnail(tmp_path / "sideways.jpg", tmp_path / "a.jpg") is None
    assert Image.open(tmp_path / "a.jpg").size == (40, THUMBNAIL_PX)
    assert write_thumbnail(tmp_path / "clear.png", tmp_path / "b.jpg") is None
    assert min(Image.open(tmp_path / "b.jpg").getpixel((50, 50))) > 245

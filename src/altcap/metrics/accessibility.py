"""Caption statistics that BLV alt-text guidelines care about.

- Length: screen-reader users hear every word; guidelines (e.g. WebAIM, Diagram Center) favour
  short, front-loaded descriptions, so we report the word-count distribution.
- Redundant openers: screen readers already announce "image", so alt text starting "an image of"
  wastes the listener's time (WebAIM "Alternative Text", W3C WAI images tutorial).
- Text in the image: when the manifest knows an image holds text (`metadata.ocr_text` or
  `metadata.text_detected`), BLV users want that text read out; we report how often captions of
  such images mention text at all.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Openers that only restate "this is an image". Matched case-insensitively at the start of the
# caption, optionally after "this is" / "here is" / "there is" and an article.
REDUNDANT_OPENER_NOUNS = (
    "image",
    "picture",
    "photo",
    "photograph",
    "pic",
    "snapshot",
    "shot",
    "screenshot",
    "illustration",
)
REDUNDANT_OPENER_RE = re.compile(
    r"^\W*(?:(?:this|here|there|it)\s+(?:is|shows|was)\s+)?(?:an?\s+|the\s+)?"
    r"(?:close-?up\s+|black and white\s+)?"
    r"(?:" + "|".join(re.escape(n) for n in REDUNDANT_OPENER_NOUNS) + r")\s+(?:of|showing|shows|depicting)\b",
    re.IGNORECASE,
)
# Words that show a caption talks about written text (signs, labels, logos, quoted words).
TEXT_CUE_RE = re.compile(
    r"\b(?:text|texts|sign|signs|says|saying|reads|reading|read|written|writing|words?|letters?|"
    r"label(?:ed|led|s)?|logo|logos|caption|title|banner|poster|headline|printed|inscription)\b|\"[^\"]+\"",
    re.IGNORECASE,
)
WORD_RE = re.compile(r"[\w']+")
MIN_OCR_TOKEN_CHARS = 3  # shorter OCR tokens ("a", "of") match almost any caption


def count_words(caption: str) -> int:
    """Words in a caption (punctuation does not count)."""
    return len(WORD_RE.findall(caption))


def has_redundant_opener(caption: str) -> bool:
    """True when the caption opens with e.g. "An image of", "a photo showing", "This is a picture of"."""
    return REDUNDANT_OPENER_RE.match(caption) is not None


def find_image_text(metadata: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether the manifest says the image has text, and the OCR text if any.

    Returns:
        (None, "") when the record has neither `ocr_text` nor `text_detected`; else (has_text, ocr_text).
    """
    if "ocr_text" not in metadata and "text_detected" not in metadata:
        return None, ""
    ocr_text = str(metadata.get("ocr_text") or "").strip()
    return bool(metadata.get("text_detected")) or bool(ocr_text), ocr_text


def mentions_text(caption: str, ocr_text: str) -> bool:
    """True when the caption talks about text: a cue word, a quote, or a word of the OCR text."""
    if TEXT_CUE_RE.search(caption):
        return True
    caption_words = {w.lower() for w in WORD_RE.findall(caption)}
    ocr_words = {w.lower() for w in WORD_RE.findall(ocr_text) if len(w) >= MIN_OCR_TOKEN_CHARS}
    return bool(caption_words & ocr_words)


def summarise_accessibility(captions: list[str], metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """Accessibility statistics of one system's captions.

    Args:
        captions: raw captions, one per image.
        metadata: the manifest metadata of the same images.

    Returns:
        Length distribution (mean/median/p10/p90/min/max words), redundant-opener rate and count,
        and the share of text-bearing images whose caption mentions text (None when the manifest
        carries no text metadata).
    """
    lengths = np.array([count_words(c) for c in captions], dtype=float)
    openers = sum(has_redundant_opener(c) for c in captions)
    text_info = [find_image_text(m) for m in metadata]
    with_text = [(c, ocr) for c, (has, ocr) in zip(captions, text_info, strict=True) if has]
    known = any(has is not None for has, _ in text_info)
    return {
        "mean_length_words": float(lengths.mean()),
        "median_length_words": float(np.median(lengths)),
        "p10_length_words": float(np.percentile(lengths, 10)),
        "p90_length_words": float(np.percentile(lengths, 90)),
        "min_length_words": int(lengths.min()),
        "max_length_words": int(lengths.max()),
        "redundant_opener_rate": openers / len(captions),
        "redundant_opener_count": int(openers),
        "empty_caption_count": int(sum(not c.strip() for c in captions)),
        "n_images_with_text": len(with_text) if known else None,
        "mentions_text_rate": (
            sum(mentions_text(c, ocr) for c, ocr in with_text) / len(with_text) if with_text else None
        ),
    }

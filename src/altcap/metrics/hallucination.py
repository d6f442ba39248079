"""Object hallucination rate, CHAIR-style (Rohrbach et al. 2018), against each image's references.

Blind and low-vision users cannot check a caption against the picture and tend to trust it (MacLeod
et al., CHI 2017), so an object a caption invents costs them more than a missing detail. CHAIR counts
the MS-COCO objects a caption names that are not in the image. altcap has no segmentation labels,
so "in the image" means "named by at least one reference caption of that image" (the caption half
of CHAIR's ground truth).

- The vocabulary is the 80 COCO categories with CHAIR's synonym lists, shipped as
  `data/coco_object_synonyms.json` (source noted inside it). A user JSON of the same shape
  (`object_synonyms` in the evaluate config) adds categories, synonyms and phrases.
- Matching is word-level on lower-cased words: longest phrase first, so "hot dog" is food, "teddy
  bear" a toy and "stop sign" a sign, not a dog, a bear or nothing; plurals are generated
  ("benches", "people", "knives"); "baby"/"adult" before an animal names the animal, not a person;
  phrases mapped to null ("home plate", "train track") are skipped. Like CHAIR, "orange" the colour
  counts as the fruit.
- CHAIR-i = hallucinated object mentions / all object mentions (every mention counts, as in CHAIR);
  CHAIR-s = share of captions with at least one hallucinated object (over all captions). Lower is
  better for both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from altcap.metrics.bootstrap import MeanStatistic, RatioStatistic, Statistic

SHIPPED_SYNONYMS = Path(__file__).parent / "data" / "coco_object_synonyms.json"
WORD_RE = re.compile(r"[a-z]+")
IRREGULAR_PLURALS = {
    "person": "people",
    "child": "children",
    "grandchild": "grandchildren",
    "mouse": "mice",
    "goose": "geese",
    "ox": "oxen",
    "foot": "feet",
    "calf": "calves",
    "knife": "knives",
    "pocketknife": "pocketknives",
    "wife": "wives",
}
SAME_PLURAL = {"sheep", "cattle", "bison", "people", "children", "skis", "scissors", "oxen", "luggage"}


class ObjectVocabularyError(ValueError):
    """A synonyms JSON that cannot be used; the message names the file, the entry and the fix."""


@dataclass
class ObjectVocabulary:
    """Word sequences (tuples of words) -> COCO category, or None for phrases to skip."""

    phrases: dict[tuple[str, ...], str | None] = field(default_factory=dict)
    max_words: int = 1

    def add(self, phrase: str, category: str | None) -> None:
        """Register a phrase and its plural forms."""
        words = tuple(WORD_RE.findall(phrase.lower()))
        if not words:
            return
        for last in {words[-1], *pluralise(words[-1])}:
            self.phrases.setdefault((*words[:-1], last), category)
        self.max_words = max(self.max_words, len(words))


def pluralise(word: str) -> set[str]:
    """Plural forms of an English noun (generous: an unused extra form costs nothing)."""
    if word in SAME_PLURAL:
        return {word}
    forms = {word + "s"}
    if word in IRREGULAR_PLURALS:
        forms.add(IRREGULAR_PLURALS[word])
    if word.endswith("man"):
        forms.add(word[:-3] + "men")
    if word.endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.add(word + "es")
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        forms.add(word[:-1] + "ies")
    return forms


def read_synonyms_json(path: Path) -> dict[str, Any]:
    """Read and check a synonyms JSON: {"categories": {name: [synonym, ...]}, "phrases": {...}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ObjectVocabularyError(f"{path}: cannot read the object synonyms JSON ({err})") from err
    shape = 'expected {"categories": {"dog": ["dog", "puppy"]}, "phrases": {"hot dog": "hot dog"}}'
    categories = data.get("categories", {}) if isinstance(data, dict) else None
    if not isinstance(categories, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in categories.values()
    ):
        raise ObjectVocabularyError(f"{path}: 'categories' must map a name to a list of words; {shape}")
    phrases = data.get("phrases", {})
    if not isinstance(phrases, dict) or not all(v is None or isinstance(v, str) for v in phrases.values()):
        raise ObjectVocabularyError(f"{path}: 'phrases' must map a phrase to a category or null; {shape}")
    return data


def load_object_vocabulary(extra: Path | None = None) -> ObjectVocabulary:
    """The shipped COCO vocabulary, extended by a user JSON of the same shape.

    Args:
        extra: optional user synonyms JSON; its categories' words are added to (or create) categories,
            its phrases override the shipped ones.

    Returns:
        The vocabulary.

    Raises:
        ObjectVocabularyError: the user file is unreadable, malformed or names an unknown category.
    """
    shipped = read_synonyms_json(SHIPPED_SYNONYMS)
    categories = {name: list(words) for name, words in shipped["categories"].items()}
    phrases = dict(shipped["phrases"])
    if extra is not None:
        user = read_synonyms_json(extra)
        for name, words in user.get("categories", {}).items():
            categories.setdefault(name, []).extend(words)
        for phrase, category in user.get("phrases", {}).items():
            if category is not None and category not in categories:
                raise ObjectVocabularyError(
                    f"{extra}: phrases[{phrase!r}] = {category!r} is not a category; known include "
                    f"{', '.join(sorted(categories)[:8])}, ... (add it under 'categories' first)"
                )
            phrases[phrase] = category
    vocabulary = ObjectVocabulary()
    for phrase, category in phrases.items():  # first: explicit phrases win over generated ones
        vocabulary.add(phrase, category)
    for name in shipped.get("animal_categories", []):
        for modifier in shipped.get("animal_modifiers", []):
            for word in categories.get(name, []):
                vocabulary.add(f"{modifier} {word}", name)
    for name, words in categories.items():
        for word in words:
            vocabulary.add(word, name)
    return vocabulary


def find_objects(caption: str, vocabulary: ObjectVocabulary) -> list[str]:
    """COCO categories a caption names, one entry per mention, longest phrase first."""
    words = WORD_RE.findall(caption.lower())
    found: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(vocabulary.max_words, len(words) - i), 0, -1):
            key = tuple(words[i : i + size])
            if key in vocabulary.phrases:
                category = vocabulary.phrases[key]
                if category is not None:
                    found.append(category)
                i += size
                break
        else:
            i += 1
    return found


@dataclass
class HallucinationScores:
    """One system's per-image object mentions and the hallucinated ones."""

    mentions: np.ndarray  # (images,) object mentions
    hallucinated: np.ndarray  # (images,) mentions of objects no reference names
    objects: list[list[str]]  # per image, the hallucinated categories (sorted, unique)

    def statistics(self) -> dict[str, Statistic]:
        """CHAIR-i (ratio of summed counts) and CHAIR-s (mean of a per-caption indicator)."""
        return {
            "CHAIR-i": RatioStatistic(self.hallucinated, self.mentions),
            "CHAIR-s": MeanStatistic((self.hallucinated > 0).astype(float)),
        }

    def corpus(self) -> dict[str, float]:
        """CHAIR-i and CHAIR-s over all images (CHAIR-i NaN when no caption names an object)."""
        total = self.mentions.sum()
        return {
            "CHAIR-i": float(self.hallucinated.sum() / total) if total else float("nan"),
            "CHAIR-s": float((self.hallucinated > 0).mean()),
        }


def score_hallucination(
    captions: list[str], references: list[list[str]], vocabulary: ObjectVocabulary
) -> HallucinationScores:
    """Per image, the caption's object mentions and those no reference of the image names.

    Args:
        captions: one caption per image.
        references: per image, its reference captions.
        vocabulary: from `load_object_vocabulary`.

    Returns:
        The counts and the hallucinated categories.
    """
    mentions, hallucinated, objects = [], [], []
    for caption, refs in zip(captions, references, strict=True):
        truth = {category for ref in refs for category in find_objects(ref, vocabulary)}
        named = find_objects(caption, vocabulary)
        invented = [category for category in named if category not in truth]
        mentions.append(len(named))
        hallucinated.append(len(invented))
        objects.append(sorted(set(invented)))
    return HallucinationScores(np.array(mentions, float), np.array(hallucinated, float), objects)

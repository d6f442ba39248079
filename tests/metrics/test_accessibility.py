import pytest

from altcap.metrics.accessibility import (
    count_words,
    find_image_text,
    has_redundant_opener,
    mentions_text,
    summarise_accessibility,
)


@pytest.mark.parametrize(
    "caption",
    [
        "An image of a dog.",
        "a picture of two cats",
        "Photo of a beach",
        "This is a photograph showing a bridge",
        "image of a car",
        "A close-up photo of a flower",
    ],
)
def test_redundant_openers_found(caption: str) -> None:
    assert has_redundant_opener(caption)


@pytest.mark.parametrize(
    "caption",
    [
        "A dog holds a picture of its owner",
        "Imagery",
        "A photographer smiles",
        "People take a photo of the tower",
    ],
)
def test_normal_captions_are_not_redundant(caption: str) -> None:
    assert not has_redundant_opener(caption)


def test_word_count_ignores_punctuation() -> None:
    assert count_words("A dog , running !") == 3
    assert count_words("") == 0


def test_text_mentions_and_metadata() -> None:
    assert mentions_text('A sign that says "Open"', "")
    assert mentions_text("A red octagon with STOP on it", "STOP")
    assert not mentions_text("A red octagon by the road", "STOP")
    assert find_image_text({}) == (None, "")
    assert find_image_text({"text_detected": False}) == (False, "")
    assert find_image_text({"ocr_text": "EXIT"}) == (True, "EXIT")


def test_summary_values() -> None:
    captions = ["An image of a dog", "A sign reads exit", "two cats sleeping on a sofa", ""]
    metadata = [{}, {"ocr_text": "EXIT"}, {"text_detected": True}, {}]
    summary = summarise_accessibility(captions, metadata)
    assert summary["mean_length_words"] == pytest.approx((5 + 4 + 6 + 0) / 4)
    assert summary["median_length_words"] == 4.5
    assert summary["redundant_opener_rate"] == 0.25
    assert summary["n_images_with_text"] == 2 and summary["mentions_text_rate"] == 0.5
    assert summary["empty_caption_count"] == 1
    assert summarise_accessibility(captions, [{}] * 4)["mentions_text_rate"] is None

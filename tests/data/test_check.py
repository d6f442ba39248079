import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from altcap.data.check import run_data_check
from altcap.data.configs import DataCheckConfig
from altcap.data.manifest import ManifestError, read_manifest, resolve_image
from image_damage import write_phone_photos

from .conftest import jpeg_bytes, make_photo, write_manifest_lines, write_png_header

# (code, manifest line, field) of every problem planted by `planted`.
EXPECTED = [
    ("CAPTION_DUPLICATE", 1, "captions[1]"),
    ("CAPTION_REPEATED", 1, "captions"),
    ("IMAGE_MISSING", 2, "image"),
    ("IMAGE_ZERO_BYTES", 3, "image"),
    ("IMAGE_TRUNCATED", 4, "image"),
    ("IMAGE_UNREADABLE", 5, "image"),
    ("IMAGE_DECOMPRESSION_BOMB", 6, "image"),
    ("IMAGE_CMYK", 7, "image"),
    ("IMAGE_16BIT", 8, "image"),
    ("IMAGE_GREYSCALE", 8, "image"),
    ("IMAGE_PALETTE", 9, "image"),
    ("IMAGE_ALPHA", 10, "image"),
    ("IMAGE_GREYSCALE", 11, "image"),
    ("IMAGE_EXIF_ORIENTATION", 12, "image"),
    ("CAPTION_EMPTY", 13, "captions[0]"),
    ("CAPTION_EMPTY", 13, "captions[1]"),
    ("CAPTION_CONTROL_CHARS", 13, "captions[3]"),
    ("CAPTION_TOO_LONG", 13, "captions[4]"),
    ("CAPTION_NOT_UTF8", 13, "captions[5]"),
    ("CAPTION_NOT_UTF8", 14, "captions[0]"),
    ("IMAGE_NO_CAPTIONS", 14, "captions"),
    ("MANIFEST_BAD_LINE", 15, "-"),
    ("IMAGE_NO_CAPTIONS", 16, "captions"),
    ("IMAGE_LISTED_TWICE", 17, "image"),
    ("IMAGE_DUPLICATE", 18, "image"),
    ("SPLIT_LEAKAGE", 19, "image"),
    ("IMAGE_TOO_SMALL", 21, "image"),
    ("IMAGE_EXTREME_ASPECT", 22, "image"),
]
REMOVED_LINES = {2, 3, 4, 5, 6, 15, 17, 19}


def _row(image: str, captions: list[str], split: str | None = "train") -> dict:
    return {"image": f"images/{image}", "captions": captions, "split": split}


def _plant_images(images: Path) -> None:
    for i in range(6):
        make_photo(images / f"p{i}.jpg", seed=i)
    (images / "p0copy.jpg").write_bytes((images / "p0.jpg").read_bytes())
    Image.open(images / "p4.jpg").resize((70, 52)).save(images / "p4near.png")
    (images / "empty.jpg").write_bytes(b"")
    cut = jpeg_bytes(Image.open(images / "p1.jpg").resize((200, 160)))
    (images / "cut.jpg").write_bytes(cut[: len(cut) // 2])
    (images / "text.jpg").write_text("not an image")
    write_png_header(images / "bomb.png", 2_000, 1_000)
    make_photo(images / "cmyk.jpg", 7, mode="CMYK")
    Image.new("I;16", (64, 48), 40000).save(images / "deep.png")
    make_photo(images / "pal.png", 8, mode="P")
    make_photo(images / "alpha.png", 9, mode="RGBA")
    make_photo(images / "grey.jpg", 10, mode="L")
    exif = Image.Exif()
    exif[0x0112] = 6
    (images / "rot.jpg").write_bytes(jpeg_bytes(Image.open(images / "p5.jpg"), exif=exif))
    make_photo(images / "tiny.png", 11, size=(8, 8))
    make_photo(images / "wide.png", 12, size=(660, 33))
    make_photo(images / "unlisted.jpg", 13)


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A dataset with one of each problem `data check` finds, at known manifest lines."""
    _plant_images(tmp_path / "images")
    bad_captions = ["", "   ", "A fine caption.", "bad \x00 char", "x" * 600, "caf\ufffd"]
    rows = [
        _row("p0.jpg", ["A dog runs.", "a  DOG runs."]),
        *[
            _row(name, ["some caption"])
            for name in ("missing.jpg", "empty.jpg", "cut.jpg", "text.jpg", "bomb.png")
        ],
        *[
            _row(name, ["some caption"])
            for name in ("cmyk.jpg", "deep.png", "pal.png", "alpha.png", "grey.jpg")
        ],
        _row("rot.jpg", ["a rotated photo"]),
        _row("p1.jpg", bad_captions),
        b'{"image": "images/p2.jpg", "captions": ["bad \xff byte"], "split": "train"}',
        "this is { not json",
        _row("p3.jpg", []),
        _row("p0.jpg", ["listed again"]),
        _row("p0copy.jpg", ["a copy"]),
        _row("p4.jpg", ["original"], "train"),
        _row("p4near.png", ["resized copy"], "test"),
        _row("tiny.png", ["tiny"]),
        _row("wide.png", ["wide"]),
        _row("p5.jpg", ["A dog runs."]),
    ]
    return write_manifest_lines(tmp_path / "manifest.jsonl", rows)


def _check(manifest: Path, out: Path, **overrides: object) -> dict:
    # make_photo's upscaled blocks are blurry by design; quality flags have their own tests.
    overrides = {"quality_flags": False, **overrides}
    cfg = DataCheckConfig(
        manifest=manifest, out_dir=out, workers=1, max_decoded_pixels=1_000_000, **overrides
    )
    return run_data_check(cfg)


def test_finds_each_planted_problem_at_its_line(planted: Path, tmp_path: Path) -> None:
    report = _check(planted, tmp_path / "out")
    found = {(f["code"], f["line"], f["field"]) for f in report["findings"]}
    missing = [e for e in EXPECTED if e not in found]
    assert not missing, f"not found: {missing}"
    unlisted = [f for f in report["findings"] if f["code"] == "IMAGE_UNLISTED"]
    assert [Path(f["file"]).name for f in unlisted] == ["unlisted.jpg"]
    assert all(f["fix"] for f in report["findings"])


def test_good_lines_have_no_findings(planted: Path, tmp_path: Path) -> None:
    report = _check(planted, tmp_path / "out")
    lines_with_findings = {f["line"] for f in report["findings"]}
    assert 20 not in lines_with_findings  # the kept test copy of the leaked pair
    assert 23 not in {f["line"] for f in report["findings"] if f["code"] != "CAPTION_REPEATED"}


def test_clean_manifest_drops_errors_and_lists_every_removal(planted: Path, tmp_path: Path) -> None:
    report = _check(planted, tmp_path / "out")
    clean_path = tmp_path / "out" / "manifest.clean.jsonl"
    clean = read_manifest(clean_path)
    assert len(clean) == 23 - len(REMOVED_LINES)
    assert {r["line"] for r in report["removed"] if r["removed"] in ("record", "line")} == REMOVED_LINES
    by_image = {Path(r.image).name: r for r in clean}
    assert by_image["p1.jpg"].captions == ["A fine caption.", "x" * 600]  # errors gone, over-long kept
    assert by_image["p0.jpg"].captions == ["A dog runs.", "a  DOG runs."]  # warning kept
    assert by_image["p2.jpg"].captions == []
    assert all(resolve_image(clean_path, r).is_file() for r in clean)
    removed_captions = [r for r in report["removed"] if r["removed"].startswith("captions[")]
    assert len(removed_captions) == report["summary"]["removed_captions"] == 5


def test_report_counts_match_findings(planted: Path, tmp_path: Path) -> None:
    report = _check(planted, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "check_report.json").read_text())
    assert on_disk["counts_per_code"] == report["counts_per_code"]
    assert sum(report["counts_per_code"].values()) == len(report["findings"])
    assert report["counts_per_code"]["IMAGE_GREYSCALE"] == 2
    summary = report["summary"]
    assert summary["errors"] == sum(1 for f in report["findings"] if f["severity"] == "error")
    assert summary["records"] == 22 and summary["images_checked"] == 21
    assert on_disk["provenance"]["manifest_sha256"] == hashlib.sha256(planted.read_bytes()).hexdigest()
    assert report["duplicate_groups"][0]["kind"] in ("exact", "near")


def test_never_modifies_sources(planted: Path, tmp_path: Path) -> None:
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    _check(planted, tmp_path / "out")
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == before


def test_refuses_to_overwrite_the_checked_manifest(tmp_path: Path, photos: list[Path]) -> None:
    manifest = write_manifest_lines(tmp_path / "manifest.clean.jsonl", [_row("p0.jpg", ["a"])])
    with pytest.raises(ManifestError, match="would overwrite"):
        _check(manifest, tmp_path)


def test_caption_only_mode_skips_images(planted: Path, tmp_path: Path) -> None:
    report = _check(planted, tmp_path / "out", check_images=False)
    codes = set(report["counts_per_code"])
    assert "CAPTION_EMPTY" in codes and not any(
        c.startswith("IMAGE_") and c != "IMAGE_NO_CAPTIONS" and c != "IMAGE_LISTED_TWICE" for c in codes
    )
    assert report["summary"]["images_checked"] == 0


def test_process_pool_gives_the_same_findings(tmp_path: Path) -> None:
    rows = [
        _row(make_photo(tmp_path / "images" / f"q{i}.jpg", seed=100 + i).name, [f"photo {i}"])
        for i in range(140)
    ]
    rows[5]["captions"] = [""]
    manifest = write_manifest_lines(tmp_path / "manifest.jsonl", rows)
    inline = _check(manifest, tmp_path / "one", quality_flags=True)
    pooled = run_data_check(DataCheckConfig(manifest=manifest, out_dir=tmp_path / "two", workers=2))
    assert pooled["findings"] == inline["findings"]
    assert pooled["summary"]["images_checked"] == 140


def test_an_image_listed_three_times_is_one_finding(tmp_path: Path, photos: list[Path]) -> None:
    rows = [_row("p0.jpg", ["one"]), _row("p1.jpg", ["x"]), _row("p0.jpg", ["two"])]
    rows.append(_row("p0.jpg", ["3", "4"]))
    report = _check(write_manifest_lines(tmp_path / "m.jsonl", rows), tmp_path / "out")
    [finding] = [f for f in report["findings"] if f["code"] == "IMAGE_LISTED_TWICE"]
    assert finding["lines"] == [1, 3, 4] and finding["line"] == 3
    assert "images/p0.jpg is listed 3 times, on lines 1, 3, 4; kept line 1" in finding["message"]
    assert "(3 caption(s))" in finding["message"]
    assert report["counts_per_code"]["IMAGE_LISTED_TWICE"] == 1
    assert sorted(r["line"] for r in report["removed"]) == [3, 4]
    clean = read_manifest(tmp_path / "out" / "manifest.clean.jsonl")
    assert [(Path(r.image).name, r.captions) for r in clean] == [("p0.jpg", ["one"]), ("p1.jpg", ["x"])]


def test_phone_formats_pass_the_check(tmp_path: Path) -> None:
    """Issue 27 item 10b: HEIC, WebP and AVIF photos are decoded and hashed like JPEGs."""
    photos = write_phone_photos(tmp_path / "images")
    rows = [_row(p.name, [f"photo {p.suffix}"]) for p in photos]
    report = _check(write_manifest_lines(tmp_path / "m.jsonl", rows), tmp_path / "out")
    assert report["summary"]["images_checked"] == 3 and report["summary"]["errors"] == 0, report["findings"]
    assert len(read_manifest(tmp_path / "out" / "manifest.clean.jsonl")) == 3

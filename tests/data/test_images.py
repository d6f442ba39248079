from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from altcap.data.images import ImageLoadError, inspect_image, load_image_rgb, read_upright_size

from .conftest import jpeg_bytes, make_photo, write_png_header


def test_load_converts_modes_to_rgb(tmp_path: Path) -> None:
    make_photo(tmp_path / "grey.png", 1, mode="L")
    make_photo(tmp_path / "pal.png", 2, mode="P")
    Image.new("CMYK", (20, 10), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    for name in ("grey.png", "pal.png", "cmyk.jpg"):
        image = load_image_rgb(tmp_path / name)
        assert image.mode == "RGB", name
    # CMYK (0, 255, 0, 0) is full magenta ink: strong red and blue, little green.
    red, green, blue = load_image_rgb(tmp_path / "cmyk.jpg").getpixel((5, 5))
    assert red > 200 and blue > 200 and green < 60


def test_load_scales_16_bit_instead_of_clipping(tmp_path: Path) -> None:
    pixels = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bit
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    value = load_image_rgb(tmp_path / "deep.png").getpixel((3, 3))
    assert 120 <= value[0] <= 135, value  # Pillow's plain convert would give 255


def test_load_composites_alpha_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (6, 6), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image_rgb(tmp_path / "clear.png").getpixel((2, 2)) == (255, 255, 255)


def test_load_applies_exif_orientation(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    (tmp_path / "rot.jpg").write_bytes(jpeg_bytes(image, exif=exif))
    assert load_image_rgb(tmp_path / "rot.jpg").size == (20, 40)
    assert read_upright_size(tmp_path / "rot.jpg") == (20, 40)  # from the header alone


def test_upright_size_of_a_png_reads_no_pixels(tmp_path: Path, monkeypatch) -> None:
    from PIL import ImageFile

    plain, rotated = tmp_path / "plain.png", tmp_path / "rotated.png"
    Image.new("RGB", (40, 20)).save(plain)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown 20 wide, 40 high
    Image.new("RGB", (40, 20)).save(rotated, exif=exif)
    decodes: list[int] = []
    real_load = ImageFile.ImageFile.load
    counting = lambda self, *args: decodes.append(1) or real_load(self, *args)  # noqa: E731
    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    assert read_upright_size(plain) == (40, 20) and read_upright_size(rotated) == (20, 40)
    assert decodes == []  # Pillow's PNG getexif() alone would decode each file
    assert load_image_rgb(rotated).size == (20, 40)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"nope\.jpg: image not found"):
        load_image_rgb(tmp_path / "nope.jpg")
    data = jpeg_bytes(Image.new("RGB", (64, 64), (1, 2, 3)))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg: file is cut off \(truncated\)"):
        load_image_rgb(tmp_path / "cut.jpg")


def test_load_draft_shrinks_big_jpegs(tmp_path: Path) -> None:
    make_photo(tmp_path / "big.jpg", 3, size=(800, 600))
    assert load_image_rgb(tmp_path / "big.jpg", draft_size_px=100).size == (200, 150)


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("missing.jpg", None, "IMAGE_MISSING"),
        ("empty.jpg", b"", "IMAGE_ZERO_BYTES"),
        ("text.jpg", b"this is not an image", "IMAGE_UNREADABLE"),
    ],
)
def test_inspect_reports_broken_files(tmp_path: Path, name: str, content: bytes | None, code: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    facts = inspect_image(str(path), 10**8)
    assert facts["problem"] == code
    assert facts["phash"] is None


def test_inspect_reports_truncation_and_bombs(tmp_path: Path) -> None:
    data = make_photo(tmp_path / "ok.jpg", 4, size=(200, 160)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert inspect_image(str(tmp_path / "cut.jpg"), 10**8)["problem"] == "IMAGE_TRUNCATED"
    huge = write_png_header(tmp_path / "huge.png", 60_000, 60_000)  # over Pillow's own bomb limit
    assert inspect_image(str(huge), 50_000_000)["problem"] == "IMAGE_DECOMPRESSION_BOMB"
    big = write_png_header(tmp_path / "big.png", 2_000, 1_000)  # only over our configured limit
    facts = inspect_image(str(big), 1_000_000)
    assert facts["problem"] == "IMAGE_DECOMPRESSION_BOMB"
    assert "2000x1000 = 2,000,000 pixels > max_decoded_pixels=1,000,000" in facts["problem_message"]


def test_inspect_describes_a_good_image(tmp_path: Path) -> None:
    facts = inspect_image(str(make_photo(tmp_path / "ok.png", 5, mode="RGBA")), 10**8)
    assert facts["problem"] is None
    assert (facts["format"], facts["mode"], facts["alpha"], facts["bits16"]) == ("PNG", "RGBA", True, False)
    assert len(facts["phash"]) == 16 and len(facts["sha256"]) == 64


DAMAGE_CODES = {
    "truncated": "IMAGE_TRUNCATED",
    "corrupt": "IMAGE_UNREADABLE",
    "not_an_image": "IMAGE_UNREADABLE",
    "zero_bytes": "IMAGE_ZERO_BYTES",
    "permission_denied": "IMAGE_NO_PERMISSION",
}


@pytest.mark.parametrize("kind", sorted(DAMAGE_CODES))
def test_loader_and_check_name_each_kind_of_damage(tmp_path: Path, damage, kind: str) -> None:
    path = damage(tmp_path / "bad.png", kind)
    with pytest.raises(ImageLoadError) as err:
        load_image_rgb(path)
    assert err.value.code == DAMAGE_CODES[kind] and str(err.value).startswith(f"{path}: ")
    assert inspect_image(str(path), 10**8)["problem"] == DAMAGE_CODES[kind]


def test_decode_limit_is_read_from_the_header(tmp_path: Path) -> None:
    # 12000 x 12000 = 144 MP: under Pillow's own hard stop (179 MP), so Pillow alone would decode it.
    huge = write_png_header(tmp_path / "huge.png", 12_000, 12_000)
    with pytest.raises(ImageLoadError, match=r"huge\.png: too many pixels to decode \(12000x12000 = "
                       r"144,000,000 pixels > max_decoded_pixels=50,000,000\)") as err:
        load_image_rgb(huge)
    assert err.value.code == "IMAGE_DECOMPRESSION_BOMB"
    assert inspect_image(str(huge), 50_000_000)["problem"] == "IMAGE_DECOMPRESSION_BOMB"
    small = make_photo(tmp_path / "small.png", 5, size=(100, 100))
    with pytest.raises(ImageLoadError, match="max_decoded_pixels=9,999"):
        load_image_rgb(small, max_decoded_pixels=9_999)
    assert load_image_rgb(small, max_decoded_pixels=10_000).size == (100, 100)


@pytest.mark.parametrize("suffix", [".heic", ".webp", ".avif"])
def test_phone_formats_load_like_jpeg(tmp_path: Path, suffix: str) -> None:
    source = make_photo(tmp_path / "src.png", 6, size=(64, 48))
    image = Image.open(source).convert("RGB")
    image.save(tmp_path / f"photo{suffix}", quality=95)
    loaded = load_image_rgb(tmp_path / f"photo{suffix}")
    assert loaded.mode == "RGB" and loaded.size == (64, 48)
    # Lossy codecs: close to the source, not equal.
    assert np.abs(np.asarray(loaded, dtype=float) - np.asarray(image, dtype=float)).mean() < 12
    facts = inspect_image(str(tmp_path / f"photo{suffix}"), 10**8)
    assert facts["problem"] is None and facts["phash"] is not None

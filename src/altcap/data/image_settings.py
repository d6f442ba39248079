"""Image settings every stage's config shares (kept free of Pillow so `altcap --help` stays fast)."""

from __future__ import annotations

# 50 MP passes every phone's default photo (48 MP sensors save 8064x6048) and refuses a
# 12000x12000 (144 MP, ~430 MB as RGB) file, which Pillow's own limit (warn at 89 MP, refuse at
# 179 MP) would decode in full. A model resizes to a few hundred pixels anyway.
DEFAULT_MAX_DECODED_PIXELS = 50_000_000
MAX_DECODED_PIXELS_HELP = (
    "Images with more pixels (read from the header, before decoding) are refused: decompression "
    "bombs and absurd sizes. Independent of any model resize; 50 MP passes 48 MP phone photos."
)
SKIP_FLAG_HELP = (
    "Leave out images that cannot be read (missing, permission denied, empty, not an image, "
    "truncated, over max_decoded_pixels), counted in the run's report, instead of stopping with "
    "an error that names each file and its manifest lines."
)

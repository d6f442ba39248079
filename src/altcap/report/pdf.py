"""memo.pdf from memo.md: Markdown -> HTML (Python-Markdown) -> PDF (WeasyPrint).

WeasyPrint needs Debian's pango (`apt-get install -y libpango-1.0-0 libpangoft2-1.0-0`). Without it the
memo falls back to a plain-text PDF drawn with matplotlib, so a memo is always produced.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import markdown

_CSS = """
@page { size: A4; margin: 13mm 14mm 14mm 14mm;
  @top-center { content: "%(stamp)s"; color: #b00; font: bold 9pt sans-serif; }
  @bottom-right { content: counter(page) " / " counter(pages); font: 8pt sans-serif; color: #555; } }
body { font: 8.6pt/1.3 "DejaVu Sans", sans-serif; color: #111; }
h1 { font-size: 14pt; margin: 0 0 4pt; } h2 { font-size: 11pt; margin: 8pt 0 3pt; }
table { border-collapse: collapse; width: 100%%; margin: 3pt 0; font-size: 7.6pt; }
th, td { border: 0.5pt solid #999; padding: 1.5pt 3pt; text-align: left; vertical-align: top; }
img { max-width: 100%%; max-height: 55mm; display: block; margin: 3pt auto; }
tr { break-inside: avoid; }
td img { width: 26mm; max-height: 26mm; margin: 0 0 1pt; }
.decision { border: 2pt solid #234; background: #eef3f8; padding: 4pt 8pt; margin: 4pt 0; }
.decision h2 { margin-top: 2pt; }
blockquote { color: #b00; font-weight: bold; margin: 2pt 0; }
code { font-size: 7.4pt; }
"""


def render_html(markdown_text: str, simulated: bool) -> str:
    """The memo as a standalone HTML page (recommendation box styled, SIMULATED header on every page)."""
    body = markdown.markdown(markdown_text, extensions=["tables", "md_in_html"])
    stamp = "SIMULATED DATA - not a real study" if simulated else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{_CSS % {'stamp': stamp}}</style></head>"
        + (f"<body>{body}</body></html>")
    )


def import_weasyprint():
    """WeasyPrint, imported without its side effect on every later image load in this process.

    Importing it sets Pillow's global `ImageFile.LOAD_TRUNCATED_IMAGES = True`, after which truncated
    photos decode silently (grey bottoms) instead of failing in altcap's image loader.
    """
    from PIL import ImageFile

    refused = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import weasyprint
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = refused
    return weasyprint


def write_pdf(markdown_text: str, out_pdf: Path, simulated: bool) -> str:
    """Write the memo PDF; returns the engine used ("weasyprint" or "matplotlib (fallback: <why>)")."""
    html = render_html(markdown_text, simulated)
    (out_pdf.with_suffix(".html")).write_text(html, encoding="utf-8")
    try:
        weasyprint = import_weasyprint()
    except (ImportError, OSError) as err:  # OSError: pango missing
        write_text_pdf(markdown_text, out_pdf, simulated)
        return f"matplotlib (fallback: WeasyPrint unavailable: {err})"
    weasyprint.HTML(string=html, base_url=str(out_pdf.parent)).write_pdf(out_pdf)
    return "weasyprint"


def write_text_pdf(markdown_text: str, out_pdf: Path, simulated: bool, lines_per_page: int = 80) -> None:
    """Plain-text PDF fallback: wrapped Markdown lines on A4 pages, stamped when simulated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    lines = [w for line in markdown_text.splitlines() for w in (textwrap.wrap(line, 120) or [""])]
    with PdfPages(out_pdf) as pdf:
        for start in range(0, max(len(lines), 1), lines_per_page):
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(
                0.05,
                0.97,
                "\n".join(lines[start : start + lines_per_page]),
                va="top",
                family="monospace",
                fontsize=6.5,
            )
            if simulated:
                fig.text(0.5, 0.99, "SIMULATED DATA - not a real study", ha="center", va="top", color="red")
            pdf.savefig(fig)
            plt.close(fig)

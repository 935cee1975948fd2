"""Fax test pages: a PDF of N distinct pages made with ghostscript (from a PostScript program
written here: big page numbers, boxes, lines of text), the fax TIFF SendFax sends (G4,
1728 px wide, 204x196 dpi, ghostscript), and page renderings to compare pixels (ghostscript
to 8-bit grey PGM at one DPI, anti-aliased)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# the fax page: 1728 x 2156 pixels at 204 x 196 dpi, so the PDF made from the received TIFF
# has the size of the original's pages
PAGE_WIDTH_PT = 1728 / 204 * 72
PAGE_HEIGHT_PT = 2156 / 196 * 72


def _gs() -> str:
    found = shutil.which("gs")
    if found is None:
        pytest.fail("ghostscript is missing: run .ci/install-system-packages", pytrace=False)
    return found


def _run(*args: str) -> None:
    subprocess.run([_gs(), "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", *args],
                   check=True, capture_output=True, timeout=120)


def make_pdf(path: Path, pages: int) -> Path:
    """A PDF of `pages` pages, each unlike the others."""
    program = [f"<< /PageSize [{PAGE_WIDTH_PT:.3f} {PAGE_HEIGHT_PT:.3f}] >> setpagedevice"]
    for page in range(1, pages + 1):
        program += [
            "/Helvetica-Bold findfont 200 scalefont setfont",
            f"{80 + 40 * page} 480 moveto ({page}) show",
            "4 setlinewidth",
            f"{60 + 30 * page} {620 + 10 * page} {200 + 20 * page} {60 + 15 * page} rectstroke",
            f"{300 - 20 * page} 120 {120 + 40 * page} {80 + 10 * page} rectfill",
            "/Helvetica findfont 18 scalefont setfont",
            *(f"50 {420 - 22 * line} moveto (Page {page}, line {line}: wildix-ast "
              f"Fax2Mail test {'x' * (page * line % 17)}) show" for line in range(1, 12)),
            "showpage"]
    source = path.with_suffix(".ps")
    source.write_text("\n".join(program) + "\n")
    _run("-sDEVICE=pdfwrite", f"-sOutputFile={path}", str(source))
    return path


def fax_tiff(pdf: Path, path: Path) -> Path:
    """The PDF as SendFax wants it: bilevel G4 pages 1728 px wide, fine resolution."""
    _run("-sDEVICE=tiffg4", "-r204x196", "-g1728x2156", "-dFIXEDMEDIA", "-dPDFFitPage",
         f"-sOutputFile={path}", str(pdf))
    return path


@dataclass(frozen=True)
class Grey:
    width: int
    height: int
    pixels: bytes


def _read_pgm(path: Path) -> Grey:
    data = path.read_bytes()
    fields: list[bytes] = []
    at = 0
    while len(fields) < 4:  # P5 width height maxval, comments skipped
        while data[at:at + 1].isspace():
            at += 1
        if data[at:at + 1] == b"#":
            at = data.index(b"\n", at) + 1
            continue
        end = at
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[at:end])
        at = end
    assert fields[0] == b"P5" and fields[3] == b"255", fields
    width, height = int(fields[1]), int(fields[2])
    return Grey(width, height, data[at + 1:at + 1 + width * height])


def render(pdf: Path, folder: Path, dpi: int) -> list[Grey]:
    """Each page of `pdf` as 8-bit grey pixels at `dpi` (anti-aliased)."""
    folder.mkdir(parents=True, exist_ok=True)
    _run("-sDEVICE=pgmraw", f"-r{dpi}", "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4",
         f"-sOutputFile={folder}/page-%03d.pgm", str(pdf))
    return [_read_pgm(p) for p in sorted(folder.glob("page-*.pgm"))]


def mean_difference(a: Grey, b: Grey) -> float:
    """Mean absolute grey difference (0-255) over the pages' common area; a page whose size
    differs by more than 2 px is a different page (255)."""
    if abs(a.width - b.width) > 2 or abs(a.height - b.height) > 2:
        return 255.0
    width, height = min(a.width, b.width), min(a.height, b.height)
    total = 0
    for y in range(height):
        row_a = a.pixels[y * a.width:y * a.width + width]
        row_b = b.pixels[y * b.width:y * b.width + width]
        total += sum(abs(p - q) for p, q in zip(row_a, row_b, strict=True))
    return total / (width * height)


def assert_same_pages(received: Path, want: list[Grey], folder: Path, dpi: int,
                      max_mean: float, label: str) -> None:
    """Each page of the `received` PDF, rendered at `dpi`, differs from its original in
    `want` by a mean of at most `max_mean` grey levels and by less than half its difference
    from any other original page; as many pages. Prints each page's figures."""
    got = render(received, folder, dpi)
    assert len(got) == len(want), (label, len(got), len(want))
    for n, page in enumerate(got):
        own = mean_difference(page, want[n])
        others = [mean_difference(page, w) for k, w in enumerate(want) if k != n]
        print(f"{label} page {n + 1}: {own:.2f}/255 to its original, "
              f"{min(others):.2f} to the nearest other page")
        assert own <= max_mean, (label, n + 1, own)
        assert own < min(others) / 2, (label, n + 1, own, others)

"""
Is a screenshot blank? A page whose script failed still shows its frame (a heading, an
empty table, an empty box for the chart); what it lacks is what the script draws. So a
screenshot is judged by regions, the chart's and the table rows', each of which must hold
enough ink (pixels other than the region's background, its most common colour) in enough
distinct colours.

Pure: PNG bytes in, problems out (Pillow decodes).
"""

from __future__ import annotations

import io
from collections import Counter

from attrs import frozen
from PIL import Image

#: A rectangle of a screenshot, in its pixels: left, top, right, bottom (right and bottom
#: excluded), as Pillow's C{crop} takes it.
Box = tuple[int, int, int, int]


@frozen
class Ink:
    """
    What a region of a screenshot holds.

    @ivar pixels: its area.
    @ivar colours: how many distinct colours.
    @ivar ink: the share of its pixels, 0 to 1, that differ from its most common colour.
    """

    pixels: int
    colours: int
    ink: float


@frozen
class Wanted:
    """
    What a region must hold at least not to be blank: C{colours} distinct colours, a share
    C{ink} of pixels off its background, and an area of C{pixels}.
    """

    colours: int = 4
    ink: float = 0.01
    pixels: int = 400


def image_size(png: bytes) -> tuple[int, int]:
    """The width and height of the PNG C{png}, in pixels."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size


def ink_in(png: bytes, box: Box) -> Ink:
    """What the region C{box} of the PNG C{png} holds (cut to the image)."""
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
        left, top = max(0, box[0]), max(0, box[1])
        right, bottom = min(width, box[2]), min(height, box[3])
        if right <= left or bottom <= top:
            return Ink(pixels=0, colours=0, ink=0.0)
        region = image.convert("RGB").crop((left, top, right, bottom))
        counts = Counter(region.getdata())
    pixels = (right - left) * (bottom - top)
    background = counts.most_common(1)[0][1]
    return Ink(pixels=pixels, colours=len(counts), ink=(pixels - background) / pixels)


def blank_regions(png: bytes, regions: dict[str, Box], wanted: Wanted = Wanted()) -> list[str]:
    """
    The problems of the PNG C{png}: each region of C{regions} (by name) that is missing
    (no area), too small, or holds less than C{wanted}. None: nothing is blank.
    """
    problems: list[str] = []
    for name, box in regions.items():
        found = ink_in(png, box)
        if found.pixels < wanted.pixels:
            problems.append(f"{name}: {found.pixels} pixels in {box}, "
                            f"fewer than {wanted.pixels}")
        elif found.colours < wanted.colours or found.ink < wanted.ink:
            problems.append(f"{name}: blank ({found.colours} colours, {found.ink:.2%} ink in "
                            f"{box}; wanted {wanted.colours} colours, {wanted.ink:.0%} ink)")
    return problems


def scaled_box(rect: dict[str, float], scale: float) -> Box:
    """
    An element's rectangle (C{getBoundingClientRect()}'s C{left}, C{top}, C{width},
    C{height}, in CSS pixels of the viewport) in the pixels of a screenshot of the viewport
    taken at C{scale} device pixels per CSS pixel.
    """
    left, top = rect["left"] * scale, rect["top"] * scale
    return (round(left), round(top), round(left + rect["width"] * scale),
            round(top + rect["height"] * scale))

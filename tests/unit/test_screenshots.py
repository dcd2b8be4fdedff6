"""
The blank-screenshot check of the dashboard's browser tests (L{tests.support.screenshots}),
on images drawn here: an empty box is blank, a drawn chart is not.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw
from twisted.trial.unittest import SynchronousTestCase

from tests.support.screenshots import Wanted, blank_regions, image_size, ink_in, scaled_box

WHITE = (255, 255, 255)


def png_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def page(draw_chart: bool) -> bytes:
    """A 200x100 white page with a bordered box at (20, 20)-(180, 80), a chart in it if asked."""
    image = Image.new("RGB", (200, 100), WHITE)
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 179, 79), outline=(200, 200, 200))
    if draw_chart:
        draw.line([(25, 75), (60, 30), (100, 60), (140, 25), (175, 70)], fill=(30, 90, 200),
                  width=2)
        for y in (35, 50, 65):
            draw.line([(25, y), (175, y)], fill=(235, 235, 235))
        draw.text((30, 22), "750 W", fill=(20, 20, 20))
    return png_of(image)


class InkTests(SynchronousTestCase):
    def test_drawn_region_passes(self) -> None:
        """A box with a line, a grid and a label is not blank."""
        self.assertEqual(blank_regions(page(True), {"chart": (20, 20, 180, 80)}), [])

    def test_empty_box_is_blank(self) -> None:
        """The same box with only its border (the page's frame, no script) is blank."""
        (problem,) = blank_regions(page(False), {"chart": (20, 20, 180, 80)})
        self.assertTrue(problem.startswith("chart: blank ("), problem)

    def test_missing_region(self) -> None:
        """An element of no area (a table without rows), or one off the image, is a problem."""
        problems = blank_regions(page(True), {"rows": (20, 20, 180, 20),
                                              "below": (0, 150, 200, 250)})
        self.assertEqual([p.split(":")[0] for p in problems], ["rows", "below"])
        self.assertIn("0 pixels", problems[0])

    def test_small_region(self) -> None:
        """A region smaller than wanted is a problem, however much ink it holds."""
        (problem,) = blank_regions(page(True), {"chart": (20, 20, 180, 80)},
                                   Wanted(pixels=160 * 60 + 1))
        self.assertIn("fewer than 9601", problem)

    def test_ink(self) -> None:
        """The counts: area, colours, share off the most common colour."""
        image = Image.new("RGB", (10, 10), WHITE)
        image.putpixel((1, 1), (0, 0, 0))
        image.putpixel((2, 2), (255, 0, 0))
        ink = ink_in(png_of(image), (0, 0, 10, 10))
        self.assertEqual((ink.pixels, ink.colours, ink.ink), (100, 3, 0.02))
        # Cut to the image.
        self.assertEqual(ink_in(png_of(image), (-5, -5, 2, 2)).pixels, 4)
        self.assertEqual(image_size(png_of(image)), (10, 10))

    def test_scaled_box(self) -> None:
        """CSS pixels to device pixels."""
        rect = {"left": 10.0, "top": 5.5, "width": 100.0, "height": 50.0}
        self.assertEqual(scaled_box(rect, 1), (10, 6, 110, 56))
        self.assertEqual(scaled_box(rect, 2), (20, 11, 220, 111))

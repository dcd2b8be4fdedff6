"""
Unmasking incoming payloads: the same bytes as Autobahn's own masker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from autobahn.websocket import xormasker
from twisted.trial.unittest import SynchronousTestCase

from shellylog.framing import unmask

# Defined under a condition (the native masker or the Python one), so not a name mypy
# sees exported.
create_xor_masker: Callable[..., Any] = vars(xormasker)["create_xor_masker"]


class UnmaskTests(SynchronousTestCase):
    def test_like_autobahn_in_pieces(self) -> None:
        rng = random.Random(7)
        for size in [1, 2, 3, 4, 5, 7, 125, 126, 1000, 70000]:
            payload = rng.randbytes(size)
            mask = rng.randbytes(4)
            expected = create_xor_masker(mask, size).process(payload)
            # Whole, and cut at random places (a frame arrives over several reads).
            cuts = sorted(rng.sample(range(1, size), min(size - 1, 5))) if size > 1 else []
            pieces, start = [], 0
            for end in [*cuts, size]:
                pieces.append(unmask(payload[start:end], mask, start))
                start = end
            self.assertEqual(unmask(payload, mask, 0), expected, size)
            self.assertEqual(b"".join(pieces), expected, (size, cuts))

    def test_empty_and_leading_zeros(self) -> None:
        self.assertEqual(unmask(b"", b"abcd", 3), b"")
        # Bytes that unmask to zero at either end keep their place.
        self.assertEqual(unmask(b"abcd", b"abcd", 0), b"\x00\x00\x00\x00")
        self.assertEqual(unmask(b"\x00\x00\x00\x01", b"\x00\x00\x00\x01", 0), bytes(4))
        self.assertEqual(unmask(b"bcda", b"abcd", 1), bytes(4))

"""
The documents the code cites: every "rule N" in the package and the tests names a rule
that C{docs/minute-log.md} defines.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "minute-log.md"
# "rule 5", "rules 1-2", "rules 1\u20132" (an en dash), "rule 1b"
CITATION = re.compile(r"\brules? (\d+)[a-z]?(?:\s*[-\u2013]\s*(\d+))?")


def defined_rules(text: str) -> set[int]:
    """The rule numbers a minute-log document defines: its numbered items under Rules."""
    rules = text.split("## Rules", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^(\d+)\. \*\*", rules, re.MULTILINE)}


def cited_rules(text: str) -> set[int]:
    """The rule numbers a text cites."""
    cited: set[int] = set()
    for first, last in CITATION.findall(text):
        cited.update(range(int(first), int(last or first) + 1))
    return cited


class MinuteRulesTests(SynchronousTestCase):
    """The numbered minute rules are in the repository, and every citation resolves."""

    def test_rules_defined(self) -> None:
        self.assertEqual(defined_rules(RULES.read_text(encoding="utf-8")), set(range(1, 10)))

    def test_citations_resolve(self) -> None:
        defined = defined_rules(RULES.read_text(encoding="utf-8"))
        sources = [p for d in ("shellylog", "tests") for p in (ROOT / d).rglob("*.py")]
        self.assertTrue(sources)
        unresolved = {
            str(p.relative_to(ROOT)): sorted(cited_rules(p.read_text(encoding="utf-8")) - defined)
            for p in sources
        }
        self.assertEqual({p: r for p, r in unresolved.items() if r}, {})
        every = set().union(*(cited_rules(p.read_text(encoding="utf-8")) for p in sources))
        self.assertTrue(every, "no citation found: the pattern no longer matches them")

    def test_parsers(self) -> None:
        self.assertEqual(cited_rules("by rules 1\u20132 (rule 5, rule 1b) and rules 3-4"),
                         {1, 2, 3, 4, 5})
        self.assertEqual(defined_rules("## Rules\n1. **A.** x\n2. **B.**\n## Next\n3. **C.**"),
                         {1, 2})

    def test_readme_points_to_rules(self) -> None:
        readme = (ROOT / "README.rst").read_text(encoding="utf-8")
        self.assertIn("docs/minute-log.md", readme)

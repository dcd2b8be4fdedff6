"""
Tests for L{shellylog.admission}: token file parsing and the admission policy (pure).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from shellylog.admission import ANY_DEVICE, Admission, TokenRule, parse_token_file

PLUS = "shellyplus1pm-001122334455"
PRO = "shellypro4pm-aabbccddeeff"


class ParseTokenFileTests(SynchronousTestCase):
    """C{token device-id-glob} lines, comments and blank lines."""

    def test_one_line(self) -> None:
        self.assertEqual(parse_token_file("t1 shellyplus1pm-*\n"),
                         (TokenRule("t1", ("shellyplus1pm-*",)),))

    def test_comments_and_blank_lines(self) -> None:
        text = (
            "# devices in the shed\n"
            "\n"
            "   \n"
            "t1 shellyplus1pm-*\n"
            "  # indented comment\n"
            "\tt2\tshellypro4pm-aabbcc*  \n"
            "\n"
        )
        self.assertEqual(
            parse_token_file(text),
            (TokenRule("t1", ("shellyplus1pm-*",)), TokenRule("t2", ("shellypro4pm-aabbcc*",))),
        )

    def test_no_trailing_newline_and_crlf(self) -> None:
        self.assertEqual(parse_token_file("t1 a*\r\nt2 b*"),
                         (TokenRule("t1", ("a*",)), TokenRule("t2", ("b*",))))

    def test_duplicate_token_merges_globs(self) -> None:
        text = "t1 shellyplus1pm-*\nt2 x*\nt1 shellypro4pm-aabbcc*\n"
        self.assertEqual(
            parse_token_file(text),
            (TokenRule("t1", ("shellyplus1pm-*", "shellypro4pm-aabbcc*")),
             TokenRule("t2", ("x*",))),
        )

    def assert_bad_line(self, text: str, number: int, secret: str) -> None:
        error = self.assertRaises(ValueError, parse_token_file, text)
        message = str(error)
        self.assertIn(f"line {number}", message)
        self.assertNotIn(secret, message)

    def test_token_without_glob(self) -> None:
        self.assert_bad_line("# header\n\nok1 a*\nSUPERSECRET\n", 4, "SUPERSECRET")

    def test_three_fields(self) -> None:
        self.assert_bad_line("ok1 a*\nSUPERSECRET a* b*\n", 2, "SUPERSECRET")

    def test_glob_with_space_is_three_fields(self) -> None:
        self.assert_bad_line("SUPERSECRET shelly plus*\n", 1, "SUPERSECRET")

    def test_empty_file(self) -> None:
        self.assertRaises(ValueError, parse_token_file, "")

    def test_only_comments_and_blanks(self) -> None:
        self.assertRaises(ValueError, parse_token_file, "# nothing here\n\n   \n# still\n")


class AdmitTests(SynchronousTestCase):
    """L{Admission.admit}: which globs a presented token opens."""

    def test_no_tokens_admits_everyone(self) -> None:
        admission = Admission()
        self.assertEqual(admission.admit(None), ANY_DEVICE)
        self.assertEqual(admission.admit("anything"), ANY_DEVICE)
        self.assertEqual(ANY_DEVICE, ("*",))

    def test_none_presented(self) -> None:
        admission = Admission(tokens=(TokenRule("s3cret", ANY_DEVICE),))
        self.assertIsNone(admission.admit(None))

    def test_none_never_matches_an_empty_token(self) -> None:
        """Not presenting a token is refused even by a rule whose token is empty."""
        admission = Admission(tokens=(TokenRule("", ANY_DEVICE),))
        self.assertIsNone(admission.admit(None))

    def test_empty_presented(self) -> None:
        admission = Admission(tokens=(TokenRule("s3cret", ANY_DEVICE),))
        self.assertIsNone(admission.admit(""))

    def test_wrong(self) -> None:
        admission = Admission(tokens=(TokenRule("s3cret", ANY_DEVICE),))
        self.assertIsNone(admission.admit("s3cre"))
        self.assertIsNone(admission.admit("s3cret "))
        self.assertIsNone(admission.admit("S3CRET"))

    def test_non_ascii_presented(self) -> None:
        """A token from a URL may carry any characters (and lone surrogates); refused."""
        admission = Admission(tokens=(TokenRule("s3cret", ANY_DEVICE),))
        self.assertIsNone(admission.admit("s3cret\u00e9"))
        self.assertIsNone(admission.admit("\udcff"))

    def test_right(self) -> None:
        admission = Admission(tokens=(TokenRule("s3cret", ANY_DEVICE),))
        self.assertEqual(admission.admit("s3cret"), ("*",))

    def test_each_token_its_globs(self) -> None:
        admission = Admission(tokens=(TokenRule("t1", ("shellyplus1pm-*",)),
                                      TokenRule("t2", ("shellypro4pm-aabbcc*", "x*"))))
        self.assertEqual(admission.admit("t1"), ("shellyplus1pm-*",))
        self.assertEqual(admission.admit("t2"), ("shellypro4pm-aabbcc*", "x*"))
        self.assertIsNone(admission.admit("t3"))


class MayLogTests(SynchronousTestCase):
    """L{Admission.may_log}: the token's globs and C{--allow} must both match."""

    def test_any_device(self) -> None:
        admission = Admission()
        self.assertTrue(admission.may_log(PRO, ANY_DEVICE))
        self.assertTrue(admission.may_log(PLUS, ANY_DEVICE))

    def test_token_globs(self) -> None:
        admission = Admission()
        self.assertTrue(admission.may_log(PLUS, ("shellyplus1pm-*",)))
        self.assertFalse(admission.may_log(PRO, ("shellyplus1pm-*",)))
        self.assertTrue(admission.may_log(PRO, ("shellyplus1pm-*", "shellypro4pm-aabbcc*")))

    def test_no_globs(self) -> None:
        self.assertFalse(Admission().may_log(PRO, ()))

    def test_case_sensitive(self) -> None:
        self.assertFalse(Admission().may_log(PRO, ("SHELLYPRO4PM-*",)))

    def test_allow(self) -> None:
        admission = Admission(allow=("shellypro4pm-*",))
        self.assertTrue(admission.may_log(PRO, ANY_DEVICE))
        self.assertFalse(admission.may_log(PLUS, ANY_DEVICE))

    def test_allow_and_token_globs(self) -> None:
        """Both must match: C{--allow} narrows what a token admits, never widens it."""
        admission = Admission(allow=("shellypro4pm-*", "shellyplus1pm-*"))
        self.assertFalse(admission.may_log(PRO, ("shellyplus1pm-*",)))
        self.assertTrue(admission.may_log(PLUS, ("shellyplus1pm-*",)))
        narrow = Admission(allow=("shellypro4pm-*",))
        self.assertFalse(narrow.may_log(PLUS, ("shellyplus1pm-*",)))

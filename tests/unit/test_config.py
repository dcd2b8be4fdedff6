"""
Tests for L{shellylog.config}: the one configuration, its defaults (also those the command
line shows and gives), and what of it C{/status} shows.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from attrs import field, frozen
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from shellylog.admission import Admission, TokenRule
from shellylog.config import (
    FALLBACK_INSTANCE,
    INSTANCE_NAME,
    SECRET,
    Config,
    Limits,
    default_instance,
    public_values,
)
from shellylog.rpc import DEVICE_ID
from shellylog.tap import Options


def shown_names(cls: type) -> list[str]:
    """The option names of C{cls}'s fields, nested ones in their place, secret ones left out."""
    names: list[str] = []
    for attribute in attrs.fields(cls):
        if attribute.metadata.get(SECRET):
            continue
        default = attribute.default
        if isinstance(default, attrs.Factory) and attrs.has(default.factory):  # type: ignore[arg-type]
            names.extend(shown_names(default.factory))
        else:
            names.append(attribute.name.replace("_", "-"))
    return names


class ConfigTests(SynchronousTestCase):
    """L{Config}: frozen, typed, and pure."""

    def test_frozen(self) -> None:
        config = Config()
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, config, "port", "x")
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, config.limits,
                          "max_rate", 1)

    def test_defaults(self) -> None:
        """The nested parts' defaults are theirs, not copies."""
        config = Config()
        self.assertEqual(config.limits, Limits())
        self.assertEqual(config.admission, Admission())
        self.assertIs(config.id_pattern, DEVICE_ID)
        self.assertEqual(config.channels, (0, 1, 2, 3))
        self.assertEqual(config.zone, ZoneInfo("UTC"))

    def test_zone(self) -> None:
        self.assertEqual(Config(tz="Europe/Berlin").zone, ZoneInfo("Europe/Berlin"))

    def test_instance_is_the_host_name(self) -> None:
        """The host name, up to its first dot (a fully qualified one says too much)."""
        self.patch(socket, "gethostname", lambda: "collector-7.example.net")
        self.assertEqual(default_instance(), "collector-7")
        self.assertEqual(Config().instance, "collector-7")
        self.patch(socket, "gethostname", lambda: "box-1")
        self.assertEqual(Config().instance, "box-1")

    def test_odd_host_name(self) -> None:
        """A host name that is no instance name gives the fallback, not a bad name."""
        for host in ["", "-x", "a b", "\u00e9t\u00e9", "x" * 64, "tab\there"]:
            with self.subTest(host=host):
                self.patch(socket, "gethostname", lambda host=host: host)
                self.assertEqual(default_instance(), FALLBACK_INSTANCE)
        self.assertTrue(INSTANCE_NAME.fullmatch(FALLBACK_INSTANCE))


class PublicValuesTests(SynchronousTestCase):
    """L{public_values}: the fields of a L{Config} as C{/status} shows them."""

    def test_every_field_but_the_tokens(self) -> None:
        shown = public_values(Config())
        self.assertEqual(list(shown), shown_names(Config))
        self.assertNotIn("tokens", shown)
        self.assertIn("allow", shown)
        self.assertIn("max-warnings", shown)

    def test_values(self) -> None:
        """Tuples as lists, patterns as their text; everything else as it is."""
        config = Config(channels=(1, 3), allow_origin=("null",),
                        admission=Admission(allow=("shellypro*",)),
                        id_pattern=re.compile("m[0-9]+"), token_file="tokens.txt",
                        limits=Limits(max_rate=7))
        shown = public_values(config)
        self.assertEqual(
            {k: shown[k] for k in ("channels", "allow-origin", "allow", "id-pattern",
                                   "token-file", "max-rate", "fsync", "threshold")},
            {"channels": [1, 3], "allow-origin": ["null"], "allow": ["shellypro*"],
             "id-pattern": "m[0-9]+", "token-file": "tokens.txt", "max-rate": 7,
             "fsync": True, "threshold": 5.0},
        )
        json.dumps(shown)

    def test_token_never_shown(self) -> None:
        config = Config(admission=Admission(tokens=(TokenRule("s3cret", ("*",)),)))
        self.assertNotIn("s3cret", json.dumps(public_values(config)))

    def test_unknown_value_refused(self) -> None:
        """A value of a type not known to be safe to show is refused, not shown."""

        @frozen
        class Odd:
            rules: tuple[TokenRule, ...] = (TokenRule("s3cret", ("*",)),)

        error = self.assertRaises(TypeError, public_values, Odd())
        self.assertNotIn("s3cret", str(error))

        @frozen
        class Other:
            thing: Any = field(factory=object)

        self.assertRaises(TypeError, public_values, Other())

    def test_repeated_name_refused(self) -> None:
        @frozen
        class Twice:
            max_rate: int = 1
            limits: Limits = field(factory=Limits)

        self.assertRaises(ValueError, public_values, Twice())


class OptionsConfigTests(SynchronousTestCase):
    """The command line builds a L{Config}, and takes its defaults from L{Config}."""

    def test_defaults_defined_once(self) -> None:
        """
        Without arguments the command line gives L{Config}'s defaults, field for field,
        but for the CSV file's name, made absolute against the working directory.
        """
        options = Options()
        options.parseOptions([])
        default = Config()
        assert default.csv is not None
        self.assertEqual(options.config, attrs.evolve(default, csv=os.path.abspath(default.csv)))

    def test_help_shows_the_defaults(self) -> None:
        """--help writes L{Config}'s defaults as they would be given on the command line."""
        text = " ".join(str(Options()).split())
        for shown in ["[default: tcp:5000]", "[default: 0,1,2,3]", "[default: 5]",
                      "[default: 60]", "[default: on]", "[default: 256KiB]",
                      "[default: 1MiB, or --max-message if larger]", "[default: 1000000]",
                      f"[default: {DEVICE_ID.pattern}]"]:
            with self.subTest(shown=shown):
                self.assertIn(shown, text)

    def test_every_option(self) -> None:
        """Each option ends up in its field."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        csv = os.path.join(folder, "power.csv")
        tokens = os.path.join(folder, "tokens")
        with open(tokens, "w", encoding="utf-8") as f:
            f.write("s3cret shellypro4pm-*\n")
        options = Options()
        options.parseOptions([
            "--port", "5001", "--csv", csv, "--channels", "2,0", "--threshold", "2.5",
            "--tz", "Europe/Berlin", "--max-carry", "3", "--poll", "30", "--fsync", "off",
            "--max-pending", "9", "--max-message", "4KiB", "--max-rate", "7",
            "--max-bytes-rate", "8KiB", "--max-connections", "11", "--max-per-address", "5",
            "--max-devices", "12", "--max-warnings", "0", "--token-file", tokens,
            "--allow", "shellypro4pm-a*", "--allow-origin", "null", "--id-pattern", "[a-z]+",
            "--instance", "box-1",
        ])
        self.assertEqual(options.config, Config(
            port="tcp:5001", csv=csv, channels=(0, 2), threshold=2.5, tz="Europe/Berlin",
            max_carry=3, poll=30.0, fsync=False, max_pending=9,
            limits=Limits(max_message=4096, max_rate=7, max_bytes_rate=8192,
                          max_connections=11, max_per_address=5, max_devices=12,
                          max_warnings=0),
            admission=Admission(tokens=(TokenRule("s3cret", ("shellypro4pm-*",)),),
                                allow=("shellypro4pm-a*",)),
            allow_origin=("null",), token_file=tokens, id_pattern=re.compile("[a-z]+"),
            instance="box-1",
        ))

    def test_instance(self) -> None:
        """--instance: a short printable name; anything else stops the start."""
        for good in ["a", "box-1", "eu-west.2", "host_3:5001", "x" * 63]:
            with self.subTest(good=good):
                options = Options()
                options.parseOptions(["--instance", good])
                self.assertEqual(options.config.instance, good)
        for bad in ["", "-a", ".a", "a b", "a/b", "x" * 64, "\u00e9t\u00e9", "a\n", 'a"b']:
            with self.subTest(bad=bad):
                error = self.assertRaises(usage.UsageError, Options().parseOptions,
                                          ["--instance", bad])
                self.assertIn("--instance", str(error))

    def test_instance_default(self) -> None:
        """Without --instance: the host name, as L{Config} would have it."""
        self.patch(socket, "gethostname", lambda: "collector-7.example.net")
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.config.instance, "collector-7")

"""
Decoding device frames and encoding our requests.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from shellylog import rpc
from shellylog.rpc import (
    ErrorResponse,
    FrameError,
    Notification,
    Response,
    decode_frame,
    encode_request,
    is_safe_id,
    status_params,
)
from tests.fixtures import load_fixture


class DecodeTests(SynchronousTestCase):
    def reason(self, text: str | bytes) -> str:
        with self.assertRaises(FrameError) as cm:
            decode_frame(text)
        reason: str = cm.exception.reason
        return reason

    def test_notify_status(self) -> None:
        frame = decode_frame(
            '{"src":"shellypro4pm-aabbccddeeff","dst":"ws","method":"NotifyStatus",'
            '"params":{"ts":1764403215.4,"switch:0":{"id":0,"apower":433.1,"current":1.91}}}'
        )
        self.assertEqual(
            frame,
            Notification(
                src="shellypro4pm-aabbccddeeff",
                method="NotifyStatus",
                params={"ts": 1764403215.4, "switch:0": {"id": 0, "apower": 433.1,
                                                          "current": 1.91}},
            ),
        )
        assert isinstance(frame, Notification)
        self.assertEqual(frame.kind, "notifystatus")

    def test_full_status_from_fixture(self) -> None:
        status = load_fixture("pro4pm-fw1.0.3.json")["status"]
        text = json.dumps({"src": "shellypro4pm-aabbccddeeff", "dst": "ws",
                           "method": "NotifyFullStatus", "params": {"ts": 5.01, **status}})
        frame = decode_frame(text.encode())
        assert isinstance(frame, Notification)
        self.assertEqual(frame.kind, "notifyfullstatus")
        self.assertEqual(status_params(frame.params), {"ts": 5.01, **status})

    def test_method_case_insensitive(self) -> None:
        frame = decode_frame('{"src":"d1","method":"notifyfullSTATUS","params":{}}')
        assert isinstance(frame, Notification)
        self.assertEqual(frame.kind, "notifyfullstatus")
        self.assertEqual(frame.method, "notifyfullSTATUS")

    def test_event(self) -> None:
        frame = decode_frame(
            '{"src":"d1","dst":"ws","method":"NotifyEvent","params":{"ts":1764403300.2,'
            '"events":[{"component":"sys","event":"scheduled_restart"}]}}'
        )
        assert isinstance(frame, Notification)
        self.assertEqual(frame.kind, "notifyevent")

    def test_missing_params_is_empty(self) -> None:
        self.assertEqual(decode_frame('{"src":"d1","method":"NotifyEvent"}'),
                         Notification("d1", "NotifyEvent", {}))
        self.assertEqual(decode_frame('{"src":"d1","method":"NotifyEvent","params":null}'),
                         Notification("d1", "NotifyEvent", {}))

    def test_response(self) -> None:
        self.assertEqual(
            decode_frame('{"id":7,"src":"d1","dst":"shellylog","result":{"switch:0":{"id":0}}}'),
            Response(src="d1", id=7, result={"switch:0": {"id": 0}}),
        )
        self.assertEqual(decode_frame('{"id":"x","src":"d1","result":null}'),
                         Response(src="d1", id="x", result=None))

    def test_error_response(self) -> None:
        self.assertEqual(
            decode_frame('{"id":8,"src":"d1","dst":"shellylog","error":{"code":-114,'
                         '"message":"Method NotifyStatus failed: not found"}}'),
            ErrorResponse(src="d1", id=8, code=-114,
                          message="Method NotifyStatus failed: not found"),
        )

    def test_unusable_frames(self) -> None:
        cases: dict[str | bytes, str] = {
            "not json": "not_json",
            b"\xff\xfe\x00": "not_json",
            "[1,2]": "not_object",
            '"text"': "not_object",
            '{"method":"NotifyStatus","params":{}}': "bad_src",
            '{"src":5,"method":"NotifyStatus"}': "bad_src",
            '{"src":"d1","method":5}': "bad_method",
            '{"src":"d1","method":""}': "bad_method",
            '{"src":"d1","method":"NotifyStatus","params":"on"}': "bad_params",
            '{"src":"d1","method":"NotifyStatus","params":[1]}': "bad_params",
            '{"src":"d1","id":[1],"result":{}}': "bad_id",
            '{"src":"d1","id":true,"result":{}}': "bad_id",
            '{"src":"d1","result":{}}': "bad_id",
            '{"src":"d1","id":1,"error":"boom"}': "bad_error",
            '{"src":"d1","id":1}': "unknown_shape",
            '{"src":"d1","src":"d2","method":"NotifyStatus"}': "duplicate_key",
            '{"src":"d1","method":"NotifyStatus","params":{"switch:0":{"apower":1,"apower":2}}}':
                "duplicate_key",
        }
        for text, reason in cases.items():
            self.assertEqual(self.reason(text), reason, text)

    def test_deep_nesting_is_a_frame_error(self) -> None:
        # Deep enough for json's RecursionError, and within MAX_VALUES: deeper still is
        # refused before parsing, as too_many_values.
        self.assertEqual(self.reason("[" * 1999 + "]" * 1999), "too_deep")
        self.assertEqual(self.reason("[" * 100000 + "]" * 100000), "too_many_values")

    def test_nesting_limit(self) -> None:
        # The frame and params are levels 1 and 2; 29 objects and a list make 32 levels,
        # which parse; one list more is refused, whichever decoder (NaN: the exact one).
        head = '{"src":"d1","method":"X","params":{"x":' + '{"a":' * 29
        frame = decode_frame(head + "[1]" + "}" * 31)
        assert isinstance(frame, Notification)
        value = frame.params["x"]
        for _ in range(29):
            value = value["a"]
        self.assertEqual(value, [1])
        self.assertEqual(self.reason(head + "[[1]]" + "}" * 31), "too_deep")
        self.assertEqual(self.reason(head + "[[NaN]]" + "}" * 31), "too_deep")

    def test_duplicate_keys_hidden_from_the_fast_path(self) -> None:
        # Counting '":' against the parsed keys must not be fooled by a key spaced from
        # its colon or by '":' inside a string: each of these has one key twice.
        for text in [
            '{"src":"d1","method":"X","params":{"a" :1,"a":2}}',
            '{"src":"d1","method":"X","params":{"a"\t:1,"a":2,"b":"\\":"}}',
            '{"src":"d1","method":"X","params":{"a":1,"a":2,"b":"\\":"}}',
            '{"src":"d1","method":"X","params":{"a":1,"a":2,"b":"\\u0022:"}}',
            '{"src":"d1","method":"X","params":{"a":1,"a":2}, "c" : 3}',
        ]:
            self.assertEqual(self.reason(text), "duplicate_key", text)

    def test_fast_and_exact_decoders_agree(self) -> None:
        """Random texts (duplicates, escapes, spacing, nesting): the same answer as the
        standard library's decoder with a duplicate check."""
        rng = random.Random(11)
        pieces = ["a", "b", '":', '\\":', "\\u0022:", "\\\\", ":", "\\n", "é"]

        def string() -> str:
            return '"' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 3))) + '"'

        def value(depth: int) -> str:
            kind = rng.random()
            if depth < 40 and kind < 0.3:
                keys = [string() for _ in range(rng.randint(0, 4))]
                if keys and rng.random() < 0.3:
                    keys.append(rng.choice(keys))  # a duplicate
                colon = rng.choice([":", ":", ":", " :", ": "])
                return "{" + ",".join(f"{k}{colon}{value(depth + 1)}" for k in keys) + "}"
            if depth < 40 and kind < 0.45:
                return "[" + ",".join(value(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
            return rng.choice([string(), "1", "2.5", "null", "true", "-0.0", "NaN", "1e999"])

        def outcome(decode: Callable[[str], object], text: str) -> object:
            try:
                return ("ok", json.dumps(decode(text), sort_keys=True))
            except FrameError as e:
                return ("error", e.reason)

        for _ in range(3000):
            text = '{"src":"d1","method":"X","params":' + value(2) + "}"
            self.assertEqual(outcome(rpc._loads, text), outcome(rpc._loads_strict, text), text)

    def test_unusual_text_still_decodes(self) -> None:
        # Spaced JSON, '":' inside strings and NaN take the exact decoder: same answers.
        frame = decode_frame(
            '{ "src" : "d1", "method": "X", "params": {"a": "\\":", "b": NaN, "c": 1e999} }'
        )
        assert isinstance(frame, Notification)
        self.assertEqual(frame.params["a"], '":')
        self.assertNotEqual(frame.params["b"], frame.params["b"])  # NaN
        self.assertEqual(frame.params["c"], float("inf"))


def walk_values(value: object) -> int:
    """The values in a parsed JSON value, itself included (keys are not values)."""
    if isinstance(value, dict):
        return 1 + sum(walk_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(walk_values(v) for v in value)
    return 1


class ValueLimitTests(SynchronousTestCase):
    """At most MAX_VALUES (2,000) JSON values in a frame, counted before it is parsed."""

    def frame(self, values: int, separator: str = ",") -> str:
        """A frame of exactly C{values} values: the frame, src, method, params, a list."""
        items = separator.join(["{}", "[]", '"a,[{"', "1"] * ((values - 5) // 4)
                               + ["null"] * ((values - 5) % 4))
        text = '{"src":"d1","method":"X","params":{"x":[' + items + "]}}"
        self.assertEqual(walk_values(json.loads(text)), values)
        return text

    def test_limit(self) -> None:
        self.assertEqual(rpc.MAX_VALUES, 2000)
        for separator in [",", ", "]:  # the fast decoder and the exact one
            frame = decode_frame(self.frame(2000, separator))
            assert isinstance(frame, Notification)
            self.assertEqual(len(frame.params["x"]), 1995)
            with self.assertRaises(FrameError) as cm:
                decode_frame(self.frame(2001, separator))
            self.assertEqual(cm.exception.reason, "too_many_values")
            self.assertEqual(cm.exception.detail, "2001 JSON values, more than 2000")

    def test_densest_text(self) -> None:
        """The shortest text of n values is 2n - 1 long: the count starts at 4,000."""
        for values, reason in [(2000, None), (2001, "too_many_values")]:
            text = "[" + ",".join(["0"] * (values - 1)) + "]"
            self.assertEqual(len(text), 2 * values - 1)
            try:
                rpc._loads(text)
            except FrameError as e:
                self.assertEqual(e.reason, reason)
            else:
                self.assertIsNone(reason)

    def test_commas_and_brackets_in_strings_do_not_count(self) -> None:
        text = json.dumps({"src": "d1", "method": "X",
                           "params": {"s": ",[{" * 5000, "t": '\\",{' * 1000}})
        frame = decode_frame(text)
        assert isinstance(frame, Notification)
        self.assertEqual(frame.params["s"], ",[{" * 5000)

    def test_a_real_full_status_is_far_below(self) -> None:
        status = load_fixture("pro4pm-fw1.0.3.json")["status"]
        self.assertEqual(walk_values(status), 123)
        self.assertEqual(rpc._values(json.dumps(status)), 123)

    def test_count_is_exact(self) -> None:
        """Random texts (escapes, spacing, empty containers): the count of a parse."""
        rng = random.Random(12)
        pieces = ["a", ",", "[", "{", "}", "]", '\\"', "\\\\", " ", ":", "\\n", "é"]

        def string() -> str:
            return '"' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) + '"'

        def value(depth: int) -> str:
            kind = rng.random()
            space = rng.choice(["", "", " ", "\n "])
            if depth < 8 and kind < 0.3:
                # Keys made unique: json.loads would keep one of two equal keys.
                members = [f'"{i}{string()[1:]}{space}:{space}{value(depth + 1)}'
                           for i in range(rng.randint(0, 4))]
                return "{" + space + f"{space},{space}".join(members) + space + "}"
            if depth < 8 and kind < 0.5:
                items = [value(depth + 1) for _ in range(rng.randint(0, 4))]
                return "[" + space + f"{space},{space}".join(items) + space + "]"
            return rng.choice([string(), "1", "-2.5e3", "null", "true", "false"])

        for _ in range(3000):
            text = value(0)
            self.assertEqual(rpc._values(text), walk_values(json.loads(text)), text)


class StatusParamsTests(SynchronousTestCase):
    def test_params_as_they_are(self) -> None:
        params = {"ts": 1.5, "switch:0": {"id": 0}}
        self.assertIs(status_params(params), params)

    def test_unwraps_device_status(self) -> None:
        self.assertEqual(
            status_params({"ts": 1.5, "device_status": {"switch:1": {"apower": 3}}}),
            {"switch:1": {"apower": 3}},
        )

    def test_bad_device_status(self) -> None:
        with self.assertRaises(FrameError) as cm:
            status_params({"device_status": "x"})
        self.assertEqual(cm.exception.reason, "bad_params")


class EncodeTests(SynchronousTestCase):
    def test_bootstrap_requests(self) -> None:
        self.assertEqual(
            encode_request(1, "NotifyStatus", {"enable": True}),
            '{"jsonrpc":"2.0","id":1,"src":"shellylog","method":"NotifyStatus",'
            '"params":{"enable":true}}',
        )
        self.assertEqual(
            encode_request(2, "Shelly.GetStatus"),
            '{"jsonrpc":"2.0","id":2,"src":"shellylog","method":"Shelly.GetStatus"}',
        )


class SafeIdTests(SynchronousTestCase):
    def test_safe_ids(self) -> None:
        """The fixed safety check alone (C{pattern=None}) admits these."""
        for ok in ("shellypro4pm-aabbccddeeff", "a", "A.b_c:d-9", "x" * 64):
            self.assertTrue(is_safe_id(ok, None), ok)

    def test_unsafe_ids(self) -> None:
        """The safety check refuses these, whatever the pattern admits."""
        anything = re.compile(r"(?s).*")
        for bad in ("", "-lead", "a,b", 'a"b', "a b", "a\nb", "x" * 65, "é", None, 5,
                    "../etc", "=cmd", "+1", "@x", "a;b", "a\tb", "a\x00b", "a'b"):
            self.assertFalse(is_safe_id(bad, None), repr(bad))
            self.assertFalse(is_safe_id(bad, anything), repr(bad))
            self.assertFalse(is_safe_id(bad), repr(bad))


class DeviceIdPatternTests(SynchronousTestCase):
    """The default pattern: C{<model>-<mac>} as Shelly Gen2+ devices send it."""

    def test_real_ids(self) -> None:
        """The ids of real devices (the fixtures, bug reports) and of the simulator."""
        for ok in (
            "shellypro4pm-aabbccddeeff",
            "shellyplus1pm-08b61fcd0b1c",
            "shellyplus1pm-3c61057263dc",
            "shellypmminig3-84fce63e1234",
            "shelly1pmg4-a0b1c2d3e4f5",
            "shellypro3em-aabbccddeeff",
            "shellyplus2pm-020000000001",
            *(load_fixture(name)["shelly"]["id"] for name in (
                "pro4pm-fw1.0.3.json", "plus1pm-fw1.1.0.json",
                "pro3-unmetered-fw1.1.0.json", "pro3em-fw1.1.0.json")),
        ):
            self.assertTrue(is_safe_id(ok), ok)

    def test_spreadsheet_words(self) -> None:
        """Ids a CSV reader takes for a missing value, a number, a date or a boolean."""
        for bad in ("NaN", "nan", "NULL", "null", "NA", "N/A", "None", "2026-01-01", "1E5",
                    "1e5", "true", "TRUE", "false", "-1", "0", "12", "0x1f", "inf"):
            self.assertFalse(is_safe_id(bad), repr(bad))

    def test_not_the_shape(self) -> None:
        for bad in (
            "d1",
            "shellypro4pm",  # no mac
            "shellypro4pm-",
            "shellypro4pm-AABBCCDDEEFF",  # ids are lower case
            "ShellyPro4PM-aabbccddeeff",
            "shellypro4pm-aabbccddeef",  # 11 hex digits
            "shellypro4pm-aabbccddeeff0",  # 13
            "shellypro4pm-aabbccddeefg",
            "shelly-pro4pm-aabbccddeeff",
            "shellypro4pm_aabbccddeeff",
            "4pm-aabbccddeeff",  # the model starts with a letter
            "-aabbccddeeff",
            "shellypro4pm-aabbccddeeff\n",
            "s" + "x" * 48 + "-aabbccddeeff",  # a model of 49 characters
        ):
            self.assertFalse(is_safe_id(bad), repr(bad))
        self.assertTrue(is_safe_id("s" + "x" * 47 + "-aabbccddeeff"))

    def test_other_pattern(self) -> None:
        """A given pattern replaces the default; the safety check stays."""
        upper = re.compile(r"[A-Za-z0-9]+-[0-9A-Fa-f]{12}")
        self.assertTrue(is_safe_id("shellypro4pm-AABBCCDDEEFF", upper))
        self.assertFalse(is_safe_id("shellypro4pm-AABBCCDDEEFF"))
        # The pattern must match all of the id, not a part.
        self.assertFalse(is_safe_id("x-shellypro4pm-aabbccddeeff", rpc.DEVICE_ID))

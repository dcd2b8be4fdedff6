"""
A device's known status: full replace, partial deep-merge, channel values.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from shellylog.channels import ChannelSelection
from shellylog.rpc import FrameError
from shellylog.status import MAX_COMPONENTS, ChannelValues, DeviceStatus, number
from tests.fixtures import load_fixture


class NumberTests(SynchronousTestCase):
    def test_numbers(self) -> None:
        self.assertEqual(number(450), 450)
        self.assertIsInstance(number(450), int)
        self.assertEqual(number(-3.5), -3.5)
        self.assertEqual(number(0), 0)

    def test_not_numbers(self) -> None:
        for bad in (None, True, False, "450", float("nan"), float("inf"), float("-inf"),
                    [1], {"a": 1}):
            self.assertIsNone(number(bad), repr(bad))

    def test_bounds(self) -> None:
        """At most 1e15 either side of zero, for integers and floats alike."""
        for ok in (10**15, -10**15, 1e15, -1e15, 999999999999999.9, 1e-300, -0.0):
            self.assertEqual(number(ok), ok, repr(ok))
            self.assertIs(type(number(ok)), type(ok))
        for bad in (10**15 + 1, -10**15 - 1, 1e16, -1e16, 1.0000000000000002e15, 1e308,
                    12345678901234567, 123456789012345678, int("9" * 400), -int("9" * 400)):
            self.assertIsNone(number(bad), repr(bad))

    def test_int_and_float_subclasses(self) -> None:
        """Not what a JSON decoder makes, but held to the same bounds."""

        class Int(int):
            pass

        class Float(float):
            pass

        self.assertEqual(number(Int(5)), 5)
        self.assertIsNone(number(Int(10**16)))
        self.assertEqual(number(Float(2.5)), 2.5)
        self.assertIsNone(number(Float("nan")))
        self.assertIsNone(number(Float(1e16)))


class FixtureTests(SynchronousTestCase):
    def test_pro4pm(self) -> None:
        status = DeviceStatus()
        status.replace(load_fixture("pro4pm-fw1.0.3.json")["status"])
        values = status.channel_values([0, 1, 2, 3, 4])
        self.assertEqual(sorted(values), [0, 1, 2, 3])
        self.assertEqual(values[0], ChannelValues(apower=0.0, voltage=121.7, current=0.0,
                                                  energy_total=0.0))

    def test_plus1pm(self) -> None:
        status = DeviceStatus()
        status.replace(load_fixture("plus1pm-fw1.1.0.json")["status"])
        self.assertEqual(
            status.channel_values([0, 1]),
            {0: ChannelValues(apower=0.0, voltage=232.8, current=0.0, energy_total=110.046)},
        )

    def test_unmetered_pro3_has_no_power(self) -> None:
        status = DeviceStatus()
        status.replace(load_fixture("pro3-unmetered-fw1.1.0.json")["status"])
        empty = ChannelValues(None, None, None, None)
        self.assertEqual(status.channel_values([0, 1, 2]), {0: empty, 1: empty, 2: empty})

    def test_pro3em_has_no_switches(self) -> None:
        status = DeviceStatus()
        status.replace(load_fixture("pro3em-fw1.1.0.json")["status"])
        self.assertEqual(status.channel_values([0, 1, 2, 3]), {})


class MergeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.status = DeviceStatus()
        self.status.replace({
            "switch:0": {"id": 0, "output": True, "apower": 412.7, "voltage": 229.8,
                         "current": 1.83, "aenergy": {"total": 10432.118,
                                                      "by_minute": [1, 2, 3]}},
            "sys": {"uptime": 4},
        })

    def values(self) -> ChannelValues:
        return self.status.channel_values([0])[0]

    def test_partial_overlays(self) -> None:
        self.status.merge({"switch:0": {"id": 0, "apower": 433.1, "current": 1.91}})
        self.assertEqual(self.values(), ChannelValues(433.1, 229.8, 1.91, 10432.118))

    def test_nested_merge(self) -> None:
        self.status.merge({"switch:0": {"aenergy": {"total": 10439.316,
                                                    "by_minute": [9, 8, 7]}}})
        self.assertEqual(self.values(), ChannelValues(412.7, 229.8, 1.83, 10439.316))

    def test_null_deletes(self) -> None:
        self.status.merge({"switch:0": {"voltage": None, "timer_started_at": None}})
        self.assertEqual(self.values(), ChannelValues(412.7, None, 1.83, 10432.118))

    def test_null_component_deletes_it(self) -> None:
        self.status.merge({"switch:0": None})
        self.assertEqual(self.status.channel_values([0]), {})

    def test_new_component(self) -> None:
        self.status.merge({"switch:1": {"id": 1, "apower": 7, "aenergy": {"total": None}}})
        self.assertEqual(self.status.channel_values([1])[1], ChannelValues(7, None, None, None))
        self.status.merge({"switch:1": {"aenergy": {"by_minute": [1]}, "voltage": 230}})
        self.assertEqual(self.status.channel_values([1])[1], ChannelValues(7, 230, None, None))

    def test_non_numbers_are_missing(self) -> None:
        self.status.merge({"switch:0": {"apower": "450", "voltage": True,
                                        "current": float("nan"),
                                        "aenergy": {"total": float("inf")}}})
        self.assertEqual(self.values(), ChannelValues(None, None, None, None))

    def test_full_replace_forgets(self) -> None:
        self.status.replace({"switch:0": {"id": 0, "apower": 1.5}})
        self.assertEqual(self.values(), ChannelValues(1.5, None, None, None))
        self.assertEqual(list(self.status.switches), ["switch:0"])

    def test_wrong_types_leave_no_trace(self) -> None:
        before = copy.deepcopy(self.status.switches)
        for bad in (
            {"switch:2": {"apower": 5}, "switch:0": [1, 2]},
            {"switch:0": "on"},
            {"switch:0": {"apower": 1, "aenergy": [1]}},
        ):
            with self.assertRaises(FrameError) as cm:
                self.status.merge(bad)
            self.assertEqual(cm.exception.reason, "bad_component")
            with self.assertRaises(FrameError):
                self.status.replace(bad)
        self.assertEqual(self.status.switches, before)

    def test_only_switches_are_kept(self) -> None:
        """A connection keeps what gives readings, not the rest of the device's status."""
        self.status.merge({"wifi": {"rssi": -61}, "sys": {"uptime": 9}})
        self.assertEqual(sorted(self.status.switches), ["switch:0"])

    def test_only_logged_channels_are_kept(self) -> None:
        """Switch components of channels not logged are neither kept nor checked."""
        status = DeviceStatus(selection=ChannelSelection.from_specs((1,)))
        status.replace({"switch:0": {"apower": 1}, "switch:1": {"apower": 2}, "switch:9": 5})
        status.merge({"switch:1": {"apower": 3}, "switch:2": {"apower": 4}, "switch:0": []})
        self.assertEqual(status.switches, {"switch:1": ChannelValues(3, None, None, None)})
        self.assertEqual(status.channel_values([0, 1, 2]), {1: ChannelValues(3, None, None,
                                                                             None)})

    def test_default_keys_are_the_default_channels(self) -> None:
        self.status.merge({f"switch:{n}": {"apower": n} for n in range(6)})
        self.assertEqual(sorted(self.status.switches), [f"switch:{n}" for n in range(4)])

    def test_too_many_components_leave_no_trace(self) -> None:
        before = copy.deepcopy(self.status.switches)
        self.assertEqual(MAX_COMPONENTS, 64)
        many: dict[str, object] = {f"c:{i}": {} for i in range(64)} | {"switch:0": {"apower": 9}}
        for change in (self.status.merge, self.status.replace):
            with self.assertRaises(FrameError) as cm:
                change(many)
            self.assertEqual(cm.exception.reason, "too_many_components")
        self.assertEqual(self.status.switches, before)
        del many["c:0"]
        self.status.merge(many)
        self.assertEqual(self.values().apower, 9)

    def test_merge_is_a_merge_of_the_json(self) -> None:
        """Merging into the values reads as merging into the JSON object and reading it."""
        component: dict[str, Any] = {"id": 0, "apower": {"x": 1}, "voltage": 230.1,
                     "aenergy": {"total": 5.0, "by_minute": [1]}}
        partials: list[dict[str, Any]] = [
            {"apower": {"y": None}}, {"apower": 3}, {"aenergy": {"by_minute": [2]}},
            {"aenergy": None}, {"aenergy": {"total": 6.5}}, {"voltage": None},
            {"current": 0.5, "apower": None}, {"aenergy": {"total": None}}, {},
        ]
        status = DeviceStatus()
        status.replace({"switch:0": component})
        for partial in partials:
            status.merge({"switch:0": partial})
            # What the JSON holds after a deep merge, by hand.
            for key, value in partial.items():
                if value is None:
                    component.pop(key, None)
                elif key == "aenergy" and isinstance(component.get("aenergy"), dict):
                    component["aenergy"].update(value)
                    if value.get("total", 0) is None:
                        del component["aenergy"]["total"]
                elif key == "apower" and isinstance(value, dict):
                    component[key] = {**value}
                else:
                    component[key] = value
            self.assertEqual(status.channel_values([0])[0],
                             ChannelValues.from_component(component), partial)

    def test_values_made_again_only_for_touched_switches(self) -> None:
        self.status.merge({"switch:1": {"apower": 7}})
        first = self.status.channel_values([0, 1])
        self.status.merge({"switch:1": {"apower": 8}, "sys": {"uptime": 10}})
        second = self.status.channel_values([0, 1])
        self.assertIs(second[0], first[0])
        self.assertEqual(second[1].apower, 8)
        self.status.replace({"switch:0": {"apower": 1}})
        self.assertEqual(self.status.channel_values([0, 1]), {0: ChannelValues(1, None, None,
                                                                               None)})

    def test_merge_does_not_share_input(self) -> None:
        """A later merge must not change an object a caller still holds."""
        update = {"switch:3": {"apower": 10, "aenergy": {"total": 1.0}}}
        self.status.merge(update)
        self.status.merge({"switch:3": {"aenergy": {"total": 2.0}}})
        self.assertEqual(self.status.channel_values([3])[3].energy_total, 2.0)
        self.assertEqual(update, {"switch:3": {"apower": 10, "aenergy": {"total": 1.0}}})

"""
Shelly JSON-RPC frames: JSON text in, typed frames out; requests out as JSON text.

Pure: no reactor, no I/O. Every way a frame can be unusable ends in a
L{FrameError} whose C{reason} is a short stable word, so callers can count
rejections per reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import orjson
from attrs import define, frozen

#: The fixed safety check every device id passes, whatever C{--id-pattern} says: at most
#: 64 characters a CSV cell holds unquoted and a log line holds as they are (no comma,
#: quote, white space or control character), and none a spreadsheet takes for a formula
#: (C{=}, C{+}, C{-}, C{@}) in front.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

#: The default C{--id-pattern}: a Shelly Gen2+ id, C{<model>-<mac>} in lower case
#: (C{shellypro4pm-aabbccddeeff}). Neither a number (C{1E5}, C{-1}), a date
#: (C{2026-01-01}) nor a word a CSV reader takes for a missing value or a boolean
#: (C{NaN}, C{NULL}, C{true}) has that shape.
DEVICE_ID_PATTERN = r"[a-z][a-z0-9]{0,47}-[0-9a-f]{12}"
DEVICE_ID = re.compile(DEVICE_ID_PATTERN)

#: The C{src} we put on our own requests.
OUR_SRC = "shellylog"

#: Nesting allowed in a frame: far more than any device status has, and far less than
#: what would make the status merge (which recurses) exceed Python's recursion limit.
MAX_DEPTH = 32

#: JSON values a frame may hold (objects, arrays, strings, numbers, literals; keys are not
#: values): far more than a device sends (a Pro 4PM's full status has 123), and few enough
#: that no frame costs much to parse. 256 KiB of tiny objects are 87,000 values: parsing
#: them took 9 to 13 ms, refusing them before parsing takes 1 to 3 (bench/hostile.py).
MAX_VALUES = 2000

#: A JSON string, escapes included.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


class FrameError(ValueError):
    """
    A frame the server cannot use.

    @ivar reason: a short stable word naming the kind of problem, for counting.
    @ivar detail: a human description; never contains the raw frame.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@define
class Notification:
    """
    A notification from a device (C{NotifyStatus}, C{NotifyFullStatus}, C{NotifyEvent}, ...).

    C{method} keeps the device's spelling; C{kind} is its lower-cased form for dispatch
    (the device treats method names case-insensitively, so do we).

    Treated as immutable; not frozen only because a frozen class costs half a
    microsecond more per instance, and nearly every frame is a notification.
    """

    src: str
    method: str
    params: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.method.lower()


@frozen
class Response:
    """A successful answer to one of our requests; C{result} may be C{None}."""

    src: str
    id: int | str
    result: Any


@frozen
class ErrorResponse:
    """An error answer to one of our requests."""

    src: str
    id: int | str | None
    code: Any
    message: str


Frame = Notification | Response | ErrorResponse


def is_safe_id(value: object, pattern: re.Pattern[str] | None = DEVICE_ID) -> bool:
    """
    Is C{value} a device id that may appear in the CSV and in logs: does it pass
    L{SAFE_ID} and match all of C{pattern} (L{DEVICE_ID} unless given; C{None} for the
    safety check alone)?
    """
    # The fixed check first: it bounds the length that a user's pattern is run on.
    return (
        isinstance(value, str)
        and SAFE_ID.fullmatch(value) is not None
        and (pattern is None or pattern.fullmatch(value) is not None)
    )


class _DuplicateKeyError(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Which of two values for one key a sender meant is anyone's guess: refuse the frame.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError
    return obj


# Built once: json.loads with a hook would build a new decoder for every frame.
_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def _loads_strict(text: str) -> Any:
    # The standard library's decoder, with a hook on every object: exact, and about three
    # times the cost of the fast path below, which hands anything unusual to it.
    try:
        obj = _DECODER.decode(text)
    except _DuplicateKeyError:
        raise FrameError("duplicate_key", "an object has the same key twice") from None
    except RecursionError:
        raise FrameError("too_deep", "JSON nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise FrameError("not_json", f"not JSON ({type(e).__name__})") from None
    # Counting brackets runs at C speed and clears the usual small frame at once; only a
    # frame with many brackets (a full status, or an attack) is walked.
    if text.count("{") + text.count("[") > MAX_DEPTH and _keys_within(obj) is None:
        raise FrameError("too_deep", f"JSON nested more than {MAX_DEPTH} deep")
    return obj


class _TooDeepError(ValueError):
    pass


def _check_values(text: str) -> None:
    """
    Refuse a frame of more than L{MAX_VALUES} JSON values, before it is parsed.

    Outside its strings, a JSON text's values are the top one, one after each comma, and
    the first of each container that is not empty: C{1 + commas + containers - empty
    containers}. Counting characters runs at C speed; the usual frame has fewer commas and
    brackets in all than the limit, which proves it within without taking its strings out.
    (For a text that is not JSON the count means nothing, but such a text is refused
    either way.) And a text of n values is at least 2n - 1 characters long (each value
    but the first needs a comma, or brackets of its own), so a short one needs no count.
    """
    if len(text) < 2 * MAX_VALUES:
        return
    if text.count(",") + text.count("{") + text.count("[") < MAX_VALUES:
        return
    values = _values(text)
    if values > MAX_VALUES:
        raise FrameError("too_many_values", f"{values} JSON values, more than {MAX_VALUES}")


def _values(text: str) -> int:
    """The number of values in the JSON text C{text}, counted without parsing it."""
    # Each string becomes one character, so that ["a"] does not read as an empty list.
    bare = "".join(_STRING.sub("0", text).split())
    return (1 + bare.count(",") + bare.count("{") + bare.count("[")
            - bare.count("{}") - bare.count("[]"))


def _loads(text: str | bytes) -> Any:
    """
    Parse one frame's JSON, refusing more than L{MAX_VALUES} values (before parsing),
    duplicate keys and nesting deeper than L{MAX_DEPTH}.

    orjson parses (at C speed) but lets the last of two equal keys win. Every key in the
    text ends with C{":} when no quote is followed by white space, so the text has at
    least as many C{":} as it has keys; if the parsed objects hold as many keys as that,
    none was lost to a duplicate (C{":} inside a string only adds to the text's count).
    Anything this cannot prove -- and anything orjson refuses, such as C{NaN} -- goes to
    the exact standard-library decoder, so both paths give the same answers.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("not_json", "not JSON (UnicodeDecodeError)") from None
    _check_values(text)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _loads_strict(text)
    try:
        keys = _keys(obj, 1)
    except _TooDeepError:
        raise FrameError("too_deep", f"JSON nested more than {MAX_DEPTH} deep") from None
    if (
        keys != text.count('":')
        or '" ' in text
        or '"\n' in text
        or '"\r' in text
        or '"\t' in text
    ):
        return _loads_strict(text)
    return obj


def _keys(value: Any, depth: int) -> int:
    """
    The number of keys in all objects in C{value}, a container at C{depth} (1 for the
    top); raises L{_TooDeepError} past L{MAX_DEPTH}, so it never recurses further.
    """
    if depth > MAX_DEPTH:
        raise _TooDeepError
    children: Iterable[Any]
    if type(value) is dict:
        keys = len(value)
        children = value.values()
    elif type(value) is list:
        keys = 0
        children = value
    else:
        return 0
    for child in children:
        kind = type(child)
        if kind is dict or kind is list:
            keys += _keys(child, depth + 1)
    return keys


def _keys_within(obj: Any) -> int | None:
    """The number of keys in all objects of C{obj}; C{None} if nested over L{MAX_DEPTH}."""
    try:
        return _keys(obj, 1)
    except _TooDeepError:
        return None


def decode_frame(text: str | bytes) -> Frame:
    """
    Decode one WebSocket text message from a device.

    @raise FrameError: when the frame is not a JSON object of a known shape.
    """
    obj = _loads(text)
    if not isinstance(obj, dict):
        raise FrameError("not_object", f"JSON {type(obj).__name__}, not an object")
    src = obj.get("src")
    if not isinstance(src, str):
        raise FrameError("bad_src", "src missing or not a string")
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise FrameError("bad_method", "method is not a non-empty string")
        params = obj.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise FrameError("bad_params", "params is not an object")
        return Notification(src, method, params)
    frame_id = obj.get("id")
    if frame_id is not None and (
        isinstance(frame_id, bool) or not isinstance(frame_id, (int, str))
    ):
        raise FrameError("bad_id", "id is not a number or string")
    if "error" in obj:
        error = obj["error"]
        if not isinstance(error, dict):
            raise FrameError("bad_error", "error is not an object")
        message = error.get("message")
        return ErrorResponse(
            src=src,
            id=frame_id,
            code=error.get("code"),
            message=message if isinstance(message, str) else "",
        )
    if "result" in obj:
        if frame_id is None:
            raise FrameError("bad_id", "response without id")
        return Response(src=src, id=frame_id, result=obj["result"])
    raise FrameError("unknown_shape", "neither method, result nor error")


def status_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    The component map of a status notification's C{params}.

    Some senders wrap the status as C{params.device_status}; unwrap it. Keys that are not
    components, such as the notification's own C{ts}, are left in: the status keeps
    nothing but switch components.

    @raise FrameError: when C{device_status} is there but not an object.
    """
    wrapped = params.get("device_status")
    if wrapped is not None:
        if not isinstance(wrapped, dict):
            raise FrameError("bad_params", "device_status is not an object")
        return wrapped
    return params


def encode_request(request_id: int, method: str, params: dict[str, Any] | None = None) -> str:
    """Encode a JSON-RPC request to a device, as the original collector sent it."""
    request: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": request_id,
        "src": OUR_SRC,
        "method": method,
    }
    if params is not None:
        request["params"] = params
    return json.dumps(request, separators=(",", ":"))

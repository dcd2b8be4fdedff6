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

from attrs import frozen

#: A device id we are willing to write to a CSV file or a log line.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

#: The C{src} we put on our own requests.
OUR_SRC = "shellylog"

#: Nesting allowed in a frame: far more than any device status has, and far less than
#: what would make the status merge (which recurses) exceed Python's recursion limit.
MAX_DEPTH = 32


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


@frozen
class Notification:
    """
    A notification from a device (C{NotifyStatus}, C{NotifyFullStatus}, C{NotifyEvent}, ...).

    C{method} keeps the device's spelling; C{kind} is its lower-cased form for dispatch
    (the device treats method names case-insensitively, so do we).
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


def is_safe_id(value: object) -> bool:
    """Is C{value} a device id that may appear in the CSV and in logs?"""
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


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


def _loads(text: str | bytes) -> Any:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        obj = _DECODER.decode(text)
    except _DuplicateKeyError:
        raise FrameError("duplicate_key", "an object has the same key twice") from None
    except RecursionError:
        raise FrameError("too_deep", "JSON nested too deeply") from None
    except (ValueError, TypeError) as e:
        # UnicodeDecodeError is a ValueError too.
        raise FrameError("not_json", f"not JSON ({type(e).__name__})") from None
    # Counting brackets runs at C speed and clears the usual small frame at once; only a
    # frame with many brackets (a full status, or an attack) is walked.
    if text.count("{") + text.count("[") > MAX_DEPTH and _too_deep(obj):
        raise FrameError("too_deep", f"JSON nested more than {MAX_DEPTH} deep")
    return obj


def _too_deep(obj: Any) -> bool:
    # Iterative: the point is not to recurse into what a peer nested.
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


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
        return Notification(src=src, method=method, params=params)
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

    Some senders wrap the status as C{params.device_status}; unwrap it.
    The notification's own C{ts} is not a component and is left out.

    @raise FrameError: when C{device_status} is there but not an object.
    """
    wrapped = params.get("device_status")
    if wrapped is not None:
        if not isinstance(wrapped, dict):
            raise FrameError("bad_params", "device_status is not an object")
        params = wrapped
    if "ts" in params:
        params = {k: v for k, v in params.items() if k != "ts"}
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

"""The tagged JSON encoding of safe_exec's globals (python/safe_exec_harness.py, both ways).

Strings and finite numbers are themselves; null, true, false; ``["l", ...items]`` a list;
``["d", k1, v1, ...]`` a dict (its keys strings); ``["i", "digits"]`` an int outside +-(2**53 - 1); ``["f", text]``
a float JSON cannot carry as itself (nan, +-inf) or a whole-number float (2.0), which JSON text
would read back as an int elsewhere; ``["b", base64]`` bytes.

The result is written by the sandbox, so it is hostile input here: it is held to a size before
it is parsed, and anything malformed raises ValueError.
"""

import binascii
import json
import re

MAX_SAFE_INTEGER = 2 ** 53 - 1

# Bytes of a result (the TypeScript client's DEFAULT_RESULT_BOUNDS.maxBytes).
MAX_RESULT_BYTES = 16 * 1024 * 1024

# JSON values of the tagged encoding, tags, keys and items together (DEFAULT_RESULT_BOUNDS.maxValues):
# 16 MiB of ["l"] items alone would be 2.8 million lists, half a GB and seconds of this process.
MAX_RESULT_VALUES = 200000

# A JSON string, escapes included (unrolled: linear, no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


class ResultTooLarge(ValueError):
    """The result is over MAX_RESULT_BYTES or MAX_RESULT_VALUES."""


def _count_values(data):
    """The JSON values in `data`, counted before it is parsed: outside strings, the whole text is
    one, each [ or { starts its first and each comma the next (an empty [] counts one, as the
    TypeScript client counts). Malformed text is left to the parser to refuse."""
    outside = _JSON_STRING.sub(b"", data)
    return 1 + outside.count(b"[") + outside.count(b"{") + outside.count(b",")


def _float_text(value):
    if value != value:
        return "nan"
    if value == float("inf"):
        return "inf"
    if value == float("-inf"):
        return "-inf"
    return repr(value)


def _encode(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return int(value)
        return ["i", str(int(value))]
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value.is_integer():
            return ["f", _float_text(value)]
        return float(value)
    if isinstance(value, (list, tuple)):
        return ["l"] + [_encode(item) for item in value]
    if isinstance(value, dict):
        out = ["d"]
        for key, item in value.items():
            out.append(_encode(key))
            out.append(_encode(item))
        return out
    if isinstance(value, bytes):
        return ["b", binascii.b2a_base64(value, newline=False).decode("ascii")]
    raise TypeError("cannot encode a %s" % type(value).__name__)


def encode_globals(safe_globals):
    """json_safe's result as tagged JSON bytes (ASCII: unpaired surrogates travel escaped)."""
    return json.dumps(_encode(safe_globals), allow_nan=False, separators=(",", ":")).encode("ascii")


def _decode(value):
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list) and value and isinstance(value[0], str):
        tag = value[0]
        if tag == "l":
            return [_decode(item) for item in value[1:]]
        if tag == "d":
            if len(value) % 2 != 1:
                raise ValueError("a tagged dict needs key, value pairs")
            out = {}
            for i in range(1, len(value), 2):
                # Only a string: the harness's json_safe leaves no other key (JSON's keys are
                # strings), and the hashes of ints and floats are not randomized, so keys chosen
                # to collide would cost time quadratic in their number.
                key = value[i]
                if not isinstance(key, str):
                    raise ValueError("a dict key that is not a string: a %s" % type(key).__name__)
                out[key] = _decode(value[i + 1])
            return out
        if len(value) == 2 and isinstance(value[1], str):
            if tag == "i":
                if not value[1].lstrip("-").isdigit() or not value[1].isascii():
                    raise ValueError("a bad int")
                return int(value[1])
            if tag == "f":
                return float(value[1])
            if tag == "b":
                return binascii.a2b_base64(value[1].encode("ascii"))
    raise ValueError("not a tagged value: a %s" % type(value).__name__)


def decode_result(data):
    """The globals the harness reported (tagged JSON bytes) as a dict."""
    if len(data) > MAX_RESULT_BYTES:
        raise ResultTooLarge("%d bytes, more than the %d allowed" % (len(data), MAX_RESULT_BYTES))
    values = _count_values(data)
    if values > MAX_RESULT_VALUES:
        raise ResultTooLarge("%d values, more than the %d allowed" % (values, MAX_RESULT_VALUES))
    try:
        decoded = _decode(json.loads(data.decode("utf-8")))
    except RecursionError:
        raise ValueError("lists or dicts nested too deep") from None
    if not isinstance(decoded, dict):
        raise ValueError("the result is not a dict")
    return decoded

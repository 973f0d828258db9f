"""The globals a safe_exec run reports are written by the sandbox (its code can write to the
result channel itself), so decoding them must cost the caller time and memory linear in their
bytes, and refuse what the harness never sends. No daemon needed."""

import json
import time

import pytest

from codejail import _tagged

# Every int k * (2**61 - 1) hashes to 0 in CPython: one such key per entry collides with all.
_HASH_MODULUS = 2 ** 61 - 1


def _colliding_int_keys(count):
    items = ["d"]
    for k in range(1, count + 1):
        items += [["i", str(k * _HASH_MODULUS)], 0]
    return json.dumps(items).encode("ascii")


def test_deny_result_dict_with_int_keys_chosen_to_collide():
    # 8000 such keys took 0.64 s before the fix, and the cost is quadratic in their number; the
    # harness's json_safe leaves only string keys, so any other key is refused at once.
    data = _colliding_int_keys(20000)
    started = time.monotonic()
    with pytest.raises(ValueError, match="a dict key that is not a string"):
        _tagged.decode_result(data)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("key", [1, 2.5, None, True, ["f", "nan"], ["i", str(2 ** 60)]])
def test_deny_result_dict_key_that_is_not_a_string(key):
    with pytest.raises(ValueError, match="a dict key that is not a string"):
        _tagged.decode_result(json.dumps(["d", key, 1]).encode())


def test_allow_result_dict_with_string_keys():
    data = json.dumps(["d", "a", 1, "b", ["d", "c", ["i", str(2 ** 60)]]]).encode()
    assert _tagged.decode_result(data) == {"a": 1, "b": {"c": 2 ** 60}}

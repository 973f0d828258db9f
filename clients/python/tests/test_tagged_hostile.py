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


def test_deny_result_of_many_small_values_is_refused_before_it_is_parsed():
    # 16 MiB of ["l"] items: 2.8 million lists, 550 MB and 4.5 s of the caller before the bound.
    count = (_tagged.MAX_RESULT_BYTES - 20) // 6
    data = ('["d","x",["l"' + ',["l"]' * count + "]]").encode("ascii")
    with pytest.raises(_tagged.ResultTooLarge, match="values, more than the 200000 allowed"):
        _tagged.decode_result(data)


def test_allow_result_with_commas_and_brackets_inside_its_strings():
    text = ",[{" * 1_000_000
    data = json.dumps(["d", "x", text, "y", ["l"] + [1] * 1000]).encode("ascii")
    assert _tagged.decode_result(data) == {"x": text, "y": [1] * 1000}


def test_allow_result_at_the_values_bound():
    # ["d", "x", ["l", 1, 1, ...]]: 1 + 2 + (1 + 1 + n) values.
    items = _tagged.MAX_RESULT_VALUES - 5
    data = json.dumps(["d", "x", ["l"] + [1] * items]).encode("ascii")
    assert len(_tagged.decode_result(data)["x"]) == items
    data = json.dumps(["d", "x", ["l"] + [1] * (items + 1)]).encode("ascii")
    with pytest.raises(_tagged.ResultTooLarge):
        _tagged.decode_result(data)


FORGE_THE_RESULT = '''
import os, stat
forged = b'["d",["i","2305843009213693951"],1]'
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode) and os.get_blocking(fd) is not None:
            os.write(fd, forged)
    except OSError:
        pass
os._exit(0)
'''


def test_deny_sandboxed_code_that_writes_its_own_result_gets_no_int_key_through():
    # The code shares the harness's process, so it can write the result channel itself.
    from codejail.safe_exec import SafeExecException, safe_exec  # pylint: disable=import-outside-toplevel
    with pytest.raises(SafeExecException, match="a dict key that is not a string"):
        safe_exec(FORGE_THE_RESULT, {})

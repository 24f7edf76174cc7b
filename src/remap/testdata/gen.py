"""Regenerates pickles.tsv and encode.tsv from the real CPython pickle and json modules.

    PYTHONHASHSEED=0 python3 gen.py      # Python 3.11; also runs gen_py2.py under Python 2.7

Tests read the .tsv files with include_str!; they never need Python. Pickles of REFUSED
values are never loaded here (one of them calls os.system when loaded).

pickles.tsv: `name<TAB>hex<TAB>expected`, expected being the compact JSON contrail must produce or
`!` when it must refuse. The expected JSON is computed the way Airflow 3.0's conf migration sees
the value (pickle.loads(..., encoding="latin1"), then json.dumps), with contrail's documented
differences: NaN/Infinity and ints beyond 64 bits become strings, output is compact.

encode.tsv: `json<TAB>pickle5 hex<TAB>xcom hex`, the bytes CPython writes for json.loads(json):
pickle.dumps(value, protocol=5) (what Airflow 2.x stores in dag_run.conf) and
json.dumps(value).encode() (what Airflow 2.x's XComEncoder stores in xcom.value).
"""
import collections
import datetime
import decimal
import json
import math
import os
import pickle
import subprocess
import sys

PY2 = "/root/.pyenv/versions/2.7.18/bin/python"
HERE = os.path.dirname(os.path.abspath(__file__))


class Custom:
    def __init__(self):
        self.x = 1


class Evil:
    """Pickles as a call to os.system; pickle.dumps does not call it, and contrail must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/contrail-pickle-was-executed",))


class Refuse(Exception):
    pass


def key(k):
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return str(k)
    if isinstance(k, float):
        c = canon(k)
        return c if isinstance(c, str) else repr(k)
    raise Refuse("key")


def canon(o):
    if o is None or isinstance(o, (bool, str)):
        return o
    if isinstance(o, int):
        return o if -2 ** 63 <= o < 2 ** 64 else str(o)
    if isinstance(o, float):
        if math.isnan(o):
            return "NaN"
        if math.isinf(o):
            return "Infinity" if o > 0 else "-Infinity"
        return o
    if type(o) in (list, tuple, set, frozenset):
        return [canon(x) for x in o]
    if type(o) in (dict, collections.OrderedDict):
        out = {}
        for k, v in o.items():
            ks = key(k)
            if ks in out:
                raise Refuse("duplicate key")
            out[ks] = canon(v)
        return out
    raise Refuse(type(o).__name__)


def expected(data):
    try:
        value = pickle.loads(data, encoding="latin1")
        return json.dumps(canon(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (Refuse, RecursionError, ValueError):
        return "!"


def recursive_list():
    a = [1]
    a.append(a)
    return a


def shared_bomb(levels):
    a = []
    for _ in range(levels):
        a = [a, a]
    return a


shared = [1, 2]
CASES = [
    ("empty_dict", {}),
    ("conf", {"owner": "airflow", "retries": 3, "ratio": 0.5, "flag": True, "none": None,
              "nested": {"list": [1, [2, 3]], "tuple": (1, "a"), "empty": []}}),
    ("unicode", {"k\u00e9y": "caf\u00e9 \u20ac \U0001f600", "ctl": "a\nb\t\"q\"\\ \x00\x1f\x7f"}),
    ("backslash_u", "C:\\users\\x \\u1234"),
    ("empty_str", ""),
    ("ints", [0, 1, -1, 255, 256, 65535, 65536, 2 ** 31 - 1, -2 ** 31, 2 ** 31, 2 ** 63 - 1,
              -2 ** 63, 2 ** 64 - 1]),
    ("big_ints", [2 ** 64, -2 ** 63 - 1, 2 ** 100, -(2 ** 100), 10 ** 40, -(10 ** 40), 2 ** 127,
                  -(2 ** 127), 2 ** 128]),
    ("huge_int", 10 ** 4400),
    ("floats", [0.0, -0.0, 1.0, 1.5, 0.1, 1e16, 1e15, 1e-4, 1e-5, 1.5e-7, 123456789.125,
                1.7976931348623157e308, 5e-324, 2.5e22]),
    ("nan_inf", [math.nan, math.inf, -math.inf]),
    ("bools_none", [True, False, None]),
    ("tuples", ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4))),
    ("sets", [set(), {1, 2, 3}, frozenset(), frozenset({5})]),
    ("non_str_keys", {1: "int", 2.5: "float", True: "bool", None: "none", 2 ** 70: "big",
                      math.inf: "inf"}),
    ("shared_refs", [shared, shared, {"a": shared}]),
    ("long_str", "x" * 300),
    ("big_list", list(range(2500))),
    ("big_dict", {f"k{i}": i for i in range(1200)}),
    ("deep", [[[[[[[[[[["deep"]]]]]]]]]]]),
    ("ordered_dict", collections.OrderedDict([("b", 1), ("a", 2)])),
    # Refused: not JSON, or a class we do not know.
    ("py3_bytes", b"\x00\xffbytes"),
    ("bytearray", bytearray(b"ab")),
    ("datetime", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)),
    ("date", datetime.date(2024, 1, 2)),
    ("timedelta", datetime.timedelta(seconds=5)),
    ("decimal", decimal.Decimal("1.5")),
    ("custom_class", Custom()),
    ("os_system", Evil()),
    ("dict_with_datetime", {"when": datetime.datetime(2024, 1, 2)}),
    ("tuple_key", {(1, 2): "x"}),
    ("duplicate_key", {1: "int", "1": "str"}),
    ("recursive_list", recursive_list()),
    ("shared_bomb", shared_bomb(60)),
]


# Never passed to pickle.loads here (os_system would run), expected to be refused.
REFUSED = {"py3_bytes", "bytearray", "datetime", "date", "timedelta", "decimal", "custom_class",
           "os_system", "dict_with_datetime", "shared_bomb", "py2_datetime", "py2_custom_class",
           "py2_old_style_class", "huge_int"}


def main():
    rows = []
    for name, value in CASES:
        for protocol in range(6):
            try:
                data = pickle.dumps(value, protocol)
            except (TypeError, ValueError, pickle.PicklingError):
                continue
            exp = "!" if name in REFUSED else expected(data)
            rows.append((f"{name}/p{protocol}", data.hex(), exp))
    rows.append(("out_of_band_buffer/p5",
                 pickle.dumps(pickle.PickleBuffer(b"abc"), 5, buffer_callback=lambda b: False).hex(),
                 "!"))
    py2 = subprocess.run([PY2, os.path.join(HERE, "gen_py2.py")], check=True,
                         capture_output=True, text=True).stdout
    for line in py2.splitlines():
        name, protocol, data = line.split("\t")
        exp = "!" if name in REFUSED else expected(bytes.fromhex(data))
        rows.append((f"{name}/p{protocol}", data, exp))
    assert not os.path.exists("/tmp/contrail-pickle-was-executed")
    with open(os.path.join(HERE, "pickles.tsv"), "w") as f:
        f.write("# Generated by gen.py from CPython 3.11 and 2.7; do not edit.\n")
        for row in rows:
            assert all("\t" not in c and "\n" not in c for c in row), row
            f.write("\t".join(row) + "\n")

    docs = ["{}", "[]", "null", "true", "false", "0", "-1", "255", "256", "65536", "-2147483649",
            "9223372036854775807", "18446744073709551615", "-9223372036854775808", "1.5", "-0.0",
            "1e+16", "1e-05", "0.1", '""', '"caf\u00e9 \u20ac \U0001f600"', '"a\\nb\\t\\"\\\\\\u0000"',
            '{"a":1}', '[1,2]', '{"owner":"airflow","retries":3,"ratio":0.5,"nested":{"x":[1,"y",null]}}',
            '{"list":[true,false,null],"s":"' + "x" * 300 + '"}',
            '[{"k":1,"v":"x"},{"k":2,"v":"y"},{"k":3,"v":"z"}]',
            "{" + ",".join(f'"k{i}":{i}' for i in range(1000)) + "}",
            "[" + ",".join(str(i) for i in range(1001)) + "]",
            "{" + ",".join(f'"k{i}":{i}' for i in range(1001)) + "}"]
    with open(os.path.join(HERE, "encode.tsv"), "w") as f:
        f.write("# Generated by gen.py from CPython 3.11; do not edit.\n")
        for doc in docs:
            value = json.loads(doc)
            assert json.dumps(value, separators=(",", ":"), ensure_ascii=False) == doc, doc
            p = pickle.dumps(value, protocol=5)
            x = json.dumps(value).encode("utf-8")
            f.write(f"{doc}\t{p.hex()}\t{x.hex()}\n")


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    main()

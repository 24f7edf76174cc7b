# -*- coding: utf-8 -*-
"""Python 2.7 half of gen.py: prints `name<TAB>protocol<TAB>hex` for pickles only Python 2 writes.

Run by gen.py with /root/.pyenv/versions/2.7.18/bin/python; not used at test time.
"""
import collections
import datetime
import pickle
import sys


class Custom(object):
    def __init__(self):
        self.x = 1


class OldStyle:
    pass


CASES = [
    ("py2_empty_dict", {}),
    ("py2_conf", {"owner": "airflow", "retries": 3, "ratio": 0.5, "flag": True, "none": None,
                  "nested": {"list": [1, 2, 3], "tuple": (1, "a")}}),
    ("py2_str_ascii", "hello"),
    ("py2_str_latin1", "\xe9t\xe9"),
    ("py2_str_utf8_bytes", "caf\xc3\xa9"),
    ("py2_str_escapes", "it's \"q\" \\ \n\t\x00\x7f"),
    ("py2_unicode", u"caf\xe9 \u20ac \U0001f600"),
    ("py2_unicode_escapes", u"back\\slash\nnew\rline\x1a\x00"),
    ("py2_int", 42),
    ("py2_negative_int", -7),
    ("py2_long", 2 ** 70),
    ("py2_small_long", long(5)),
    ("py2_floats", [1.5, -0.0, 1e16, 1e-5, 123456789.125]),
    ("py2_nan_inf", [float("nan"), float("inf"), float("-inf")]),
    ("py2_bools", [True, False]),
    ("py2_set", set([1, 2, 3])),
    ("py2_frozenset", frozenset([7])),
    ("py2_int_keys", {1: "a", 2: "b"}),
    ("py2_unicode_keys", {u"k\xe9y": u"v", "plain": "s"}),
    ("py2_ordered_dict", collections.OrderedDict([("b", 1), ("a", 2)])),
    ("py2_datetime", datetime.datetime(2020, 1, 2, 3, 4, 5)),
    ("py2_custom_class", Custom()),
    ("py2_old_style_class", OldStyle()),
]

for name, value in CASES:
    for protocol in (0, 1, 2):
        data = pickle.dumps(value, protocol)
        sys.stdout.write("%s\t%d\t%s\n" % (name, protocol, data.encode("hex")))

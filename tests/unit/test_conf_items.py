"""The parser's string-operation reading of `key = value` lines finds what the regular
expression ITEM_LINE finds, on every line of up to six characters over the characters that
matter (a faster parse may not read a file differently)."""

from __future__ import annotations

import itertools

from wildix_ast.conf import ITEM_LINE, _item


def test_item_reads_every_short_line_as_the_regular_expression_does() -> None:
    checked = 0
    for size in range(1, 7):
        for chars in itertools.product("a +=>\t;", repeat=size):
            line = "".join(chars).strip()
            if not line:
                continue
            found = ITEM_LINE.match(line)
            expected = None if found is None else (found["key"].strip(),
                                                   found["value"].strip())
            assert _item(line) == expected, repr(line)
            checked += 1
    assert checked > 100_000
    assert _item("exten => 1,1,Answer()") == ("exten", "1,1,Answer()")
    assert _item("setvar += a=>b") == ("setvar", "a=>b")

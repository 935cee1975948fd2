"""The parser's string-operation reading of `key = value` lines finds what the regular
expression ITEM_LINE finds, on any line (a faster parse may not read a file differently)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import examples

from wildix_ast.conf import ITEM_LINE, _item


@settings(max_examples=examples(500), deadline=None)
@given(st.text(alphabet="ab +=>\t;,x", max_size=12))
def test_item_reads_a_line_as_the_regular_expression_does(raw: str) -> None:
    line = raw.strip()
    if not line or line.startswith(("[", "#")):
        return  # headers and directives never reach it
    found = ITEM_LINE.match(line)
    expected = None if found is None else (found["key"].strip(), found["value"].strip())
    assert _item(line) == expected

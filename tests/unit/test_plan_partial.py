"""Large files are compared, checked and diffed only where they changed: the result must be
the same as looking at the whole files (property tests over random edits)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import examples

from wildix_ast.apply.plan import FileChange, Plan, _file_diff, changed_sections
from wildix_ast.apply.verify import Expectation
from wildix_ast.conf import Chunk, changed_region, chunk_changes, chunks, sections

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def pjsip(users: list[int], *, note: dict[int, str] | None = None) -> str:
    parts = ["[global]\ntype = global\n\n[t-udp]\ntype = transport\nbind = 127.0.0.1:5060\n",
             "[phone](!)\ntype = endpoint\ncontext = proc-users\n"]
    for n in users:
        extra = f"description = {note[n]}\n" if note and n in note else ""
        parts.append(f"\n[{n}](phone)\naors = {n}\nauth = {n}-auth\ncallerid = u{n}\n{extra}"
                     f"\n[{n}-auth]\ntype = auth\nusername = {n}\n\n[{n}]\ntype = aor\n")
    return "".join(parts)


def patch(old: str, diff: list[str]) -> str:
    """Apply a unified diff to `old` (a tiny patch(1), enough for what difflib writes)."""
    lines = old.splitlines()
    out: list[str] = []
    at = 0
    i = 0
    while i < len(diff):
        found = HUNK.match(diff[i])
        i += 1
        if not found:
            continue
        start = int(found[1]) - (0 if found[2] == "0" else 1)
        out.extend(lines[at:start])
        at = start
        while i < len(diff) and not diff[i].startswith("@@"):
            line = diff[i]
            if line.startswith(" "):
                out.append(line[1:])
                at += 1
            elif line.startswith("-"):
                at += 1
            elif line.startswith("+"):
                out.append(line[1:])
            i += 1
    out.extend(lines[at:])
    return "\n".join(out) + "\n"


BASE = list(range(1000, 1600))


@settings(max_examples=examples(60), deadline=None)
@given(removed=st.sets(st.sampled_from(BASE), max_size=3),
       added=st.sets(st.integers(2000, 2100), max_size=3),
       noted=st.dictionaries(st.sampled_from(BASE), st.sampled_from(["a", "b c"]),
                             max_size=3))
def test_partial_view_equals_whole_view(removed: set[int], added: set[int],
                                        noted: dict[int, str]) -> None:
    old = pjsip(BASE)
    new = pjsip(sorted((set(BASE) - removed) | added), note=noted)
    assert len(old) > 64 * 1024  # large enough to be looked at in parts

    # the diff, made around the changes only, turns the old text into the new one
    diff = _file_diff(FileChange("pjsip.conf", "change", old, new))
    assert patch(old, diff) == new

    # checked where it changed, the valid new text has no problem (references to the AOR
    # and auth of a changed endpoint are found although they did not change)
    plan = Plan(Path("/nonexistent"), (FileChange("pjsip.conf", "change", old, new),))
    assert plan.validate() == []
    broken = new.replace(f"aors = {BASE[-1]}\n", "aors = nowhere\n")
    if broken != new:
        problems = Plan(Path("/nonexistent"),
                        (FileChange("pjsip.conf", "change", old, broken),)).validate()
        assert [p.message for p in problems] == [f"[{BASE[-1]}] aors=nowhere: no aor 'nowhere'"]

    # the changed sections are exactly those whose content differs
    before, after = changed_sections(old, new)
    whole_old = {(s.name, s.get("type")): s.items for s in sections(old)}
    whole_new = {(s.name, s.get("type")): s.items for s in sections(new)}
    differs_new = {k for k, v in whole_new.items() if whole_old.get(k) != v}
    assert differs_new <= {(s.name, s.get("type")) for s in after}
    differs_old = {k for k, v in whole_old.items() if whole_new.get(k) != v}
    assert differs_old <= {(s.name, s.get("type")) for s in before}

    # verification asks for what changed and for the removed objects to be gone
    present, gone = Expectation.of_change("pjsip.conf", old, new)
    assert gone.endpoints == {str(n) for n in removed}
    assert {str(n) for n in added} | {str(n) for n in noted if n not in removed} \
        <= present.endpoints
    assert len(present.endpoints) <= len(added) + len(noted)


def test_chunks_cover_the_text_and_keep_line_numbers(tmp_path: Path) -> None:
    old = pjsip(BASE)
    new = old.replace("callerid = u1200\n", "callerid = renamed\n")
    changes = chunk_changes(old, new)
    assert [c.name for c in changes.added] == ["1200"] == [c.name for c in changes.removed]
    line = changes.added[0].line
    assert new.splitlines()[line - 1] == "[1200](phone)"


def _naive_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@settings(max_examples=examples(80), deadline=None)
@given(base=st.text(alphabet="ab[\n", max_size=300), repeat=st.sampled_from([1, 400]),
       edits=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["x", "", "yz"])),
                      max_size=3))
def test_common_prefix_and_suffix_are_exact(base: str, repeat: int,
                                            edits: list[tuple[float, str]]) -> None:
    """The block-wise search gives what a character-by-character scan gives."""
    from wildix_ast.conf import _common_prefix, _common_suffix

    old = base * repeat  # up to 120,000 characters: several 64 KiB blocks
    new = old
    for where, text in edits:
        at = int(where * len(new))
        new = new[:at] + text + new[at + 1:]
    prefix = _common_prefix(old, new)
    assert prefix == _naive_prefix(old, new)
    suffix = _common_suffix(old, new, prefix)
    assert suffix == _naive_prefix(old[prefix:][::-1], new[prefix:][::-1])


def test_distant_changes_in_a_large_file_diff_in_two_small_hunks_quickly() -> None:
    """A rename changes an endpoint row and a mailbox row, far apart in one large file of
    repeated lines: the diff is two hunks (not the whole file between them), made in well
    under a second (difflib alone took 18 s on the 10,000-user rows), with the changed
    password masked."""
    import time

    def rows(name: str, password: str) -> str:
        parts = [f"[{n}]\ntype = endpoint\ncontext = default\ncallerid = "
                 f"{name if n == 100 else 'u'}\n\n" for n in range(20_000)]
        parts += [f"[{n}-auth]\ntype = auth\nusername = {n}\npassword = "
                  f"{password if n == 19_990 else 'same'}\n\n" for n in range(20_000)]
        return "".join(parts)

    old, new = rows("Old", "secret-old"), rows("New", "secret-new")
    started = time.perf_counter()
    diff = _file_diff(FileChange("pjsip.conf", "change", old, new))
    # generous for a loaded 2-core CI machine (0.4 s alone here; difflib on the lines took 18 s
    # on the 10,000-user realtime rows of a rename, under cProfile)
    assert time.perf_counter() - started < 10.0
    hunks = [line for line in diff if line.startswith("@@")]
    assert len(hunks) == 2, diff
    assert len(diff) < 40
    assert "-callerid = Old" in diff and "+callerid = New" in diff
    assert not any("secret-" in line for line in diff)
    assert "+password = ******** (changed)" in diff
    assert "-password = ********" in diff
    # the hunks' line numbers are the file's
    first = HUNK.match(hunks[0])
    assert first is not None and old.splitlines()[int(first[1]) - 1 + 3] == "callerid = Old"


LINES = st.sampled_from(["[a]", "[b]", "[c](!)", "x = 1", "x = 2", "y = 1", "", "; note"])


@settings(max_examples=examples(200), deadline=None)
@given(old=st.lists(LINES, max_size=40), new=st.lists(LINES, max_size=40))
def test_the_section_wise_diff_turns_any_old_text_into_the_new_one(old: list[str],
                                                                     new: list[str]) -> None:
    old_text = "".join(f"{line}\n" for line in old)
    new_text = "".join(f"{line}\n" for line in new)
    diff = _file_diff(FileChange("extensions.conf", "change", old_text, new_text))
    assert patch(old_text, diff) == (new_text or "\n")  # patch() writes one line at least
    assert (diff == []) == (old_text == new_text)


def _chunk_changes_reference(old: str, new: str) -> tuple[list[Chunk], list[Chunk]]:
    """Every section of the changed region of both texts as a Chunk, matched by (header,
    rank): what `chunk_changes` finds without making a Chunk of every section."""
    region = changed_region(old, new, at_headers=True)
    lines_before = old.count("\n", 0, region.start)

    def keyed(text: str) -> dict[tuple[str, int], Chunk]:
        seen: dict[str, int] = {}
        out: dict[tuple[str, int], Chunk] = {}
        for found in chunks(text):
            chunk = Chunk(found.name, found.header, found.line + lines_before, found.text)
            n = seen.get(chunk.header, 0)
            seen[chunk.header] = n + 1
            out[(chunk.header, n)] = chunk
        return out

    before = keyed(old[region.start:region.old_end])
    after = keyed(new[region.start:region.new_end])
    return ([c for k, c in after.items()
             if k not in before or before[k].text.rstrip() != c.text.rstrip()],
            [c for k, c in before.items()
             if k not in after or after[k].text.rstrip() != c.text.rstrip()])


CHUNK_LINES = st.sampled_from(["[a]", "[b]", "[a](!)", " [c]", "[]", "x = 1", "x = 2",
                               "", "; note", "x = 1 "])


@settings(max_examples=examples(300), deadline=None)
@given(old=st.lists(CHUNK_LINES, max_size=30), new=st.lists(CHUNK_LINES, max_size=30),
       end=st.sampled_from(["\n", ""]))
def test_chunk_changes_are_those_of_every_section_compared(old: list[str], new: list[str],
                                                           end: str) -> None:
    """Only the changed sections become chunks; they are the ones (text, line, name,
    header) that comparing every section's chunk by header and rank finds."""
    old_text, new_text = "\n".join(old) + end, "\n".join(new) + end
    found = chunk_changes(old_text, new_text)
    added, removed = _chunk_changes_reference(old_text, new_text)
    assert [(c.line, c.name, c.header, c.text.rstrip()) for c in found.added] == \
        [(c.line, c.name, c.header, c.text.rstrip()) for c in added]
    assert [(c.line, c.name, c.header, c.text.rstrip()) for c in found.removed] == \
        [(c.line, c.name, c.header, c.text.rstrip()) for c in removed]

"""The voicemail of users who are gone (apply.mailboxes): removed from the target's spool
after an apply; the users' own kept; nothing outside the context's folder touched, even
through a symbolic link or a folder name that is not an extension."""

from __future__ import annotations

from pathlib import Path

import pytest

from wildix_ast.apply.mailboxes import mailbox_folder, remove_gone_mailboxes, stored_mailboxes


def _message(spool: Path, extension: str) -> Path:
    inbox = spool / "voicemail" / "default" / extension / "INBOX"
    inbox.mkdir(parents=True)
    (inbox / "msg0000.txt").write_text("[message]\ncallerid=\"A\" <101>\n")
    (inbox / "msg0000.wav").write_bytes(b"RIFF")
    return inbox


def test_gone_users_lose_their_messages_and_only_they(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for extension in ("101", "102", "20001"):
        _message(spool, extension)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("not voicemail")
    (spool / "voicemail" / "default" / "103").symlink_to(outside)
    (spool / "voicemail" / "default" / "notes").mkdir()  # not an extension: left alone
    (spool / "voicemail" / "other").mkdir()  # another context: left alone

    removed = remove_gone_mailboxes(spool, {"101", "102"})

    assert removed == ["103", "20001"]
    assert stored_mailboxes(spool) == ["101", "102"]
    assert (spool / "voicemail/default/101/INBOX/msg0000.wav").exists()
    assert (outside / "keep.txt").read_text() == "not voicemail"  # the link, not its target
    assert (spool / "voicemail/default/notes").is_dir()
    assert (spool / "voicemail/other").is_dir()
    assert remove_gone_mailboxes(spool, {"101", "102"}) == []
    assert remove_gone_mailboxes(None, set()) == []  # a target without a spool


@pytest.mark.parametrize("bad", ["../101", "1", "123456789", "10a", "", "/etc"])
def test_a_mailbox_path_is_made_only_from_an_extension(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        mailbox_folder(tmp_path, bad)


def test_a_linked_context_folder_is_refused(tmp_path: Path) -> None:
    from wildix_ast.errors import WildixError

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "123").mkdir(parents=True)
    spool = tmp_path / "spool"
    (spool / "voicemail").mkdir(parents=True)
    (spool / "voicemail" / "default").symlink_to(elsewhere)
    with pytest.raises(WildixError, match="symbolic link"):
        remove_gone_mailboxes(spool, set())
    assert (elsewhere / "123").is_dir()

"""Issue 20, must-show 4: a voicemail left for user 102 on the lab's real Asterisk arrives at
102's address, through app_voicemail's `mailcmd` (the drop folder in Asterisk's spool), the
mail queue and its sender, and a real SMTP server (aiosmtpd, STARTTLS + AUTH); its audio
decodes to the length Asterisk recorded (±1 s)."""

from __future__ import annotations

import io
import re
import time
import wave
from pathlib import Path

from support.cli_run import assert_no_traceback, run
from support.live_site import LiveSite, example_site
from support.rtp_audio import write_tone_pcap
from support.smtp_server import SmtpServer

from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.store import open_store
from wildix_ast.store.vault import with_secrets


def _drops(folder: Path) -> set[Path]:
    return set(folder.iterdir())


def test_a_voicemail_for_102_arrives_at_102s_address_with_its_audio(
        clean_live: LiveSite, tmp_path: Path) -> None:
    smtp = SmtpServer(tmp_path)
    smtp.start()
    try:
        site = example_site()
        site = site.model_copy(update={"smtp_profiles": [SmtpProfile(**smtp.profile())]})
        with open_store(str(tmp_path / "mail.sqlite3")) as store:
            store.import_site(site)
            with_secrets(site, store)
        bob = next(u for u in site.users if u.extension == "102")
        assert bob.email is not None
        lab = clean_live.lab
        drop = lab.host_path(lab.paths.mail_drop)
        for old in _drops(drop / "new"):  # what earlier voicemail tests left
            old.unlink()

        # the unavailable greeting (fr) lasts about 12 s; then about 8 s are recorded. The
        # tone goes on for the whole call: without audio for 2 s Asterisk stops recording
        tone = write_tone_pcap(tmp_path / "tone.pcap", 25)
        call = clean_live.sipp().call("101", clean_live.password("101"), "102",
                                      hold_seconds=20, audio=tone)
        assert call.connected, call.run.describe()
        deadline = time.monotonic() + 15
        while not _drops(drop / "new") and time.monotonic() < deadline:
            time.sleep(0.2)
        (dropped,) = _drops(drop / "new")
        assert list((drop / "tmp").iterdir()) == []  # renamed whole, nothing half-written

        sent = run("mail", "send", "--json", "--drop", str(drop), "--queue",
                   str(tmp_path / "queue"), "--db", str(tmp_path / "mail.sqlite3"))
        assert_no_traceback(sent)
        assert sent.returncode == 0, sent.stderr
        (mail,) = smtp.messages()
        assert mail.recipients == (bob.email,)
        message = mail.message
        assert message["From"] == "pbx@example.com" and "102" in str(message["Subject"])
        (audio,) = message.iter_attachments()
        assert audio.get_content_type() in ("audio/x-wav", "audio/wav")
        with wave.open(io.BytesIO(audio.get_content())) as recording:
            seconds = recording.getnframes() / recording.getframerate()

        # what Asterisk itself says it recorded: the message's duration in the mailbox
        inbox = lab.host_path(lab.paths.spool / "voicemail" / "default" / "102" / "INBOX")
        newest = max(inbox.glob("msg*.txt"), key=lambda p: p.stat().st_mtime)
        found = re.search(r"^duration=(\d+)$", newest.read_text(), re.MULTILINE)
        assert found is not None
        recorded = int(found.group(1))
        assert 3 <= recorded <= 20
        print(f"Asterisk recorded {recorded} s; the mailed WAV decodes to {seconds:.2f} s")
        assert abs(seconds - recorded) <= 1.0, (seconds, recorded)
        assert not dropped.exists()  # taken by the sender
    finally:
        smtp.stop()

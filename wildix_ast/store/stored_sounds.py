"""The converted audio of the site's sounds: `sound_audio` (by the digest of the source
file) and `sound_files` (which audio each (sound, language) file is)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select

from wildix_ast.sounds.audio import Audio, SoundKey, SoundLibrary
from wildix_ast.store.tables import sound_audio, sound_files

# Digests per query (SQLite allows 999 parameters).
_BATCH = 500


def write_sounds(connection: Connection, sounds: SoundLibrary) -> bool:
    """Make sound_files name exactly `sounds`, adding the audio not kept yet and dropping
    audio nothing names any more; whether anything changed."""
    files = sound_files.c
    stored = {(str(s), str(lang)): str(d) for s, lang, d in connection.execute(
        select(files.sound, files.language, files.digest))}
    wanted = {key: audio.digest for key, audio in sounds.items()}
    if stored == wanted:
        return False
    kept = {str(d) for (d,) in connection.execute(select(sound_audio.c.digest))}
    new_audio = {a.digest: a for a in sounds.values() if a.digest not in kept}
    if new_audio:
        connection.execute(insert(sound_audio), [
            {"digest": a.digest, "wav": a.wav, "wav16": a.wav16} for a in new_audio.values()])
    connection.execute(delete(sound_files))
    if wanted:
        connection.execute(insert(sound_files), [
            {"sound": s, "language": lang, "digest": d} for (s, lang), d in wanted.items()])
    unused = sorted((kept | set(new_audio)) - set(wanted.values()))
    if unused:
        connection.execute(delete(sound_audio).where(sound_audio.c.digest.in_(unused)))
    return True


def audio_by_digest(connection: Connection, digests: Iterable[str]) -> dict[str, Audio]:
    """The converted audio kept under each of `digests` (those the store has)."""
    wanted = sorted(set(digests))
    found: dict[str, Audio] = {}
    audio = sound_audio.c
    for start in range(0, len(wanted), _BATCH):
        for digest, wav, wav16 in connection.execute(
                select(audio.digest, audio.wav, audio.wav16).where(
                    audio.digest.in_(wanted[start:start + _BATCH]))):
            found[str(digest)] = Audio(str(digest), bytes(wav), bytes(wav16))
    return found


def sound_library(connection: Connection) -> dict[SoundKey, Audio]:
    """The audio of every file of the stored site's sounds: (sound, language) -> Audio."""
    files, audio = sound_files.c, sound_audio.c
    return {(str(s), str(lang)): Audio(str(d), bytes(wav), bytes(wav16))
            for s, lang, d, wav, wav16 in connection.execute(
                select(files.sound, files.language, files.digest, audio.wav,
                       audio.wav16).join(sound_audio, audio.digest == files.digest))}

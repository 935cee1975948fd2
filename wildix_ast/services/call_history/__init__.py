"""The call history's collecting service: every call Asterisk finished, written exactly once
to every enabled backend (SQLite, MariaDB/MySQL, PostgreSQL, CSV), whatever is down.

The design, its failure cases and what each one costs are in `docs/call_history.md`; in
short:

1. Asterisk appends every CDR (a leg) and every LINKEDID_END (a call is over) to two local
   files, synchronously, with no memory buffer (`calls.call_record`).
2. `source` reads each file from a checkpoint (device, inode, offset), complete lines only,
   following a rotation to the renamed file first.
3. `spool` keeps, in one local SQLite database (synchronous=FULL: fsync'd at every commit),
   the checkpoints, the legs of calls not over yet, the finished call records (one per
   linked id, `UNIQUE`), and one delivery cursor per backend. Reading lines and advancing
   the checkpoint are one transaction, so a SIGKILL of the collector re-reads nothing twice
   and skips nothing; assembling a call and forgetting its legs are one transaction too.
4. `assemble` turns a call's legs into one record with its WMS meaning (users, groups,
   direction, class, trunk, disposition), read against the site in the store.
5. `collector` delivers the records after each backend's cursor to that backend in its own
   thread; a backend writes them idempotently (unique call id: INSERT OR IGNORE / ON CONFLICT
   DO NOTHING / INSERT IGNORE; CSV: the last record id in the file's tail), then the cursor
   moves. A backend that is down keeps its cursor and retries with a backoff: it lags and
   catches up, the others do not wait for it.
"""

"""FastAGI service: call-time decisions for the dialplan (`wildix-ast agi serve`).

Decision: a small asyncio FastAGI server of our own (`protocol`, `session`, `server`), not
panoramisk's or pyst2's. Evidence, reproduced on this project's Python 3.11 by
`tests/unit/test_agi_libraries.py`:

* panoramisk 1.4 `fast_agi.Application.handler` reads the handshake with
  `while b'\\n\\n' not in buffer: buffer += await reader.read(100)`. When the peer closes
  before the blank line, `read()` returns b'' at once without yielding, so the coroutine
  never gives the event loop back: the reproduction's `asyncio.sleep(0.2)` elsewhere never
  ends and the process burns a core until killed. One caller hanging up during the
  handshake, one port scan or one half-open health check would freeze every call the
  service answers. It also has no bound on the handshake's size and no timeout on any read
  (a silent peer holds a session forever), `_read_result` turns EOF into
  `int('')` ValueError, and a 520 usage error reads one line of a multi-line block.
* panoramisk 1.4 `Application.add_route` wraps a plain function in `asyncio.coroutine`,
  removed in Python 3.11: AttributeError.
* pyst2 0.5.1 `import asterisk.fastagi` fails (`No module named 'SocketServer'`, Python 2);
  its `asterisk.agi.AGI` is for process AGI on stdin/stdout only (and installs a SIGHUP
  handler, so it cannot run outside the main thread).

Wrapping panoramisk would mean replacing `handler` (the handshake), `Request._read_result`
(answers) and `add_route`: all of its FastAGI but the class names. The protocol is small
(one header block, one line per command and answer), so owning it costs ~300 lines and
gives what the service needs and neither library has: a size limit and a timeout on every
read, a per-session deadline, a safe answer (`variables.AGI_STATUS=FAILED`) whenever a handler
raises or is slow, a sized listen backlog, and counters for `wildix-ast agi status`.
The cost is measured by `bench/agi.py` against panoramisk's own server in the same run, same
client, well-formed sessions only (it cannot survive the others). On this shared, loaded
2-core machine the two are of a kind: at 100 sessions back to back ours did 0.64x to 2.3x
panoramisk's sessions/s over five runs (0.79x, p99 1.38x, in the last), one at a time and in
bursts of 100 it was as fast or faster; both are bound by the machine (a few hundred
sessions/s, client included), not by the protocol.

Fail-safe contract with the dialplan: see `server` and docs/runtime.md.
Asterisk 22 bounds the FastAGI *connect* to 2 s (res_agi's MAX_AGI_CONNECT) but waits for
answers on an accepted connection without limit, so the server bounds itself and the systemd
unit's watchdog restarts a stalled process (`sdnotify`).
"""

"""Play real SIP phones against an Asterisk with SIPp (3.6, Debian package ``sip-tester``).

Every SIPp process runs as a subprocess with a timeout, on its own loopback ports from the
project's allocator (``wildix_ast/lab/allocator.py``), with its message trace, error trace,
statistics CSV and final screen written into a run directory.  Outcomes are read from
those files: SIP status codes from the message trace, call counts from the statistics,
the process exit code (:data:`EXIT_CODES`).

Modules, one concept each:

* ``scenarios/``: the XML scenarios, one per role, and their catalogue
  (``scenarios/__init__.py``: :class:`Scenario`, the UAS behaviours);
* ``trace.py``: SIPp's message trace and statistics, parsed;
* ``results.py``: a finished run (:class:`SippRun`) and each role's result, read from it;
* ``processes.py``: a SIPp process and its run directory; the background handles
  (:class:`UasHandle`, :class:`LoadHandle`);
* ``media.py``: RTP to play (G.711 pcaps, RFC 2833 DTMF written as a pcap);
* ``driver.py``: :class:`SippDriver`, which builds each role's command;
* ``load.py``: N calls at R calls/s between two registered phones, as a benchmark reads
  them (:class:`PhoneLoad`).

Roles of :class:`SippDriver`:

* ``register`` / ``unregister``: one REGISTER with digest auth from a short-lived SIPp.
* ``answer``: a UAS for an extension that answers (200 + SDP, waits for BYE), is busy
  (486), or rings until CANCEL (180, 200/487).  With ``password`` it registers itself,
  from the socket it answers on, as a real phone does: Asterisk's ``rewrite_contact =
  yes`` stores the REGISTER's source address, so only that socket receives the calls.
  Such a phone is SIPp in client mode with ``-m 1``: the main scenario (``phone.xml``)
  registers, waits for the driver's stop request (a SIP MESSAGE with the main call's
  Call-ID) and unregisters; the INVITEs, OPTIONS and MWI NOTIFYs Asterisk sends meanwhile
  go to the out-of-call scenario (``-oocsf``) of the behaviour.
* ``phone``: ``answer`` with a password as a context manager.
* ``call``: a UAC that calls a number with the 401/407 challenge, holds (playing audio
  or DTMF) and hangs up, gives up while ringing, or expects a rejection.
* ``call_load`` / ``start_call_load``: many calls (``-m``/``-r``/``-l``).

Adding a role
-------------
* A new way for a phone or provider to treat an INVITE (as ``unavailable``: 503): write
  ``scenarios/uas_<name>.xml`` (copy ``uas_busy.xml``: it answers OPTIONS and NOTIFY
  too), add ``"<name>"`` to ``Behaviour`` and one line to ``UAS_BEHAVIOURS`` with the
  status it refuses with.  ``answer``/``phone``
  and the UAS result (which calls completed) then know it.
* A new client scenario (REGISTER challenges, a DTMF dialogue, a transfer): the XML in
  ``scenarios/``, a :class:`Scenario` constant next to ``CALL`` (with its ``wait``
  pattern if the driver sets a pause, ``media`` if it has the media mark), a method on
  :class:`SippDriver` that calls ``self.prepare(name, scenario, ...).run()`` and reads
  its result with a ``...Result.of(run, ...)`` classmethod in ``results.py``.
* Something to play during a call: an element builder in ``media.py``, passed as
  ``media=`` to ``prepare``.
"""

from wildix_ast.lab.sipp.driver import Phone, SippDriver
from wildix_ast.lab.sipp.errors import SippError
from wildix_ast.lab.sipp.load import Line, PhoneLoad, PhoneLoadResult
from wildix_ast.lab.sipp.media import AUDIO_PCAP, PCAP_DIR, write_dtmf_pcap
from wildix_ast.lab.sipp.processes import LoadHandle, SippProcess, UasHandle
from wildix_ast.lab.sipp.results import (
    EXIT_CODES,
    CallResult,
    LoadResult,
    RegisterResult,
    SippRun,
    UasResult,
)
from wildix_ast.lab.sipp.scenarios import UAS_BEHAVIOURS, Behaviour, Scenario, scenario_path
from wildix_ast.lab.sipp.trace import SipMessage, parse_message_trace, parse_stat_csv

__all__ = [
    "AUDIO_PCAP",
    "EXIT_CODES",
    "PCAP_DIR",
    "UAS_BEHAVIOURS",
    "Behaviour",
    "CallResult",
    "Line",
    "LoadHandle",
    "LoadResult",
    "Phone",
    "PhoneLoad",
    "PhoneLoadResult",
    "RegisterResult",
    "Scenario",
    "SipMessage",
    "SippDriver",
    "SippError",
    "SippProcess",
    "SippRun",
    "UasHandle",
    "UasResult",
    "parse_message_trace",
    "parse_stat_csv",
    "scenario_path",
    "write_dtmf_pcap",
]

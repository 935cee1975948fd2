"""Load between two registered phones: N calls at R calls/s from a caller to a callee that
answers, with RTP both ways (the caller plays G.711 speech, the callee echoes it), summed
up as a benchmark reads it: answered, failed, retransmissions, post-dial delay percentiles::

    result = PhoneLoad(driver, Line("101", pw1), Line("102", pw2), calls=100, rate=5).run()
    print(result.summary())
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from wildix_ast.lab.sipp.driver import SippDriver
from wildix_ast.lab.sipp.errors import SippError
from wildix_ast.lab.sipp.media import AUDIO_PCAP
from wildix_ast.lab.sipp.processes import LoadHandle, UasHandle
from wildix_ast.lab.sipp.results import LoadResult, UasResult

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 100.0)


@dataclass(frozen=True)
class Line:
    """A phone line: extension and SIP password."""

    ext: str
    password: str


@dataclass
class PhoneLoadResult:
    calls: int
    rate: float
    #: the caller's view (SIPp's statistics and message trace)
    load: LoadResult
    #: the callee's view
    callee: UasResult

    @property
    def answered(self) -> int:
        """Calls whose INVITE got 200 OK."""
        return self.load.connected or 0

    @property
    def failed(self) -> int:
        """Calls not answered, or answered and then failed in SIPp's eyes (no clean end)."""
        return max(self.calls - self.answered, self.load.failed)

    @property
    def retransmissions(self) -> int:
        """SIP messages the caller had to send again (a lost or late answer)."""
        return self.load.retransmissions

    def post_dial_delay_ms(self) -> dict[str, float | None]:
        """Post-dial delay percentiles in milliseconds: ``{"p50": ..., "max": ...}``."""
        figures: dict[str, float | None] = {}
        for percent in PERCENTILES:
            value = self.load.post_dial_delay(percent)
            key = "max" if percent == 100.0 else f"p{percent:g}"
            figures[key] = None if value is None else round(value * 1000, 1)
        return figures

    def summary(self) -> dict[str, object]:
        """The figures, ready for JSON or a table."""
        return {
            "calls": self.calls,
            "rate": self.rate,
            "answered": self.answered,
            "failed": self.failed,
            "retransmissions": self.retransmissions,
            "post_dial_delay_ms": self.post_dial_delay_ms(),
            "duration_s": round(self.load.duration, 2),
        }


class PhoneLoad:
    """``calls`` calls at ``rate`` calls/s from ``caller`` to ``callee`` (both registered,
    RTP both ways, each call held ``hold_seconds``; at most ``limit`` at once, by default
    what the rate needs).  ``PhoneLoad(...).run()`` returns the figures; as a context
    manager it lets one watch the server while the calls are up::

        with PhoneLoad(driver, Line("101", pw1), Line("102", pw2), calls=50, rate=5) as run:
            while run.running():
                ...  # sample Asterisk
            result = run.wait()

    On entering, the callee registers from the socket it answers on (checked: 200),
    then the caller starts placing calls; leaving stops both (the callee unregisters).
    """

    def __init__(
        self,
        driver: SippDriver,
        caller: Line,
        callee: Line,
        *,
        calls: int,
        rate: float,
        hold_seconds: float = 1.0,
        limit: int | None = None,
        audio: Path | None = AUDIO_PCAP,
        timeout: float | None = None,
    ) -> None:
        if calls < 1 or rate <= 0:
            raise SippError(f"a load needs calls >= 1 and rate > 0 (got {calls}, {rate})")
        self.driver = driver
        self.caller = caller
        self.callee = callee
        self.calls = calls
        self.rate = rate
        self.hold_seconds = hold_seconds
        # room for every call the rate starts while earlier ones ring and hold
        self.limit = limit or max(1, math.ceil(rate * (hold_seconds + 3.0)))
        self.audio = audio
        self.timeout = timeout or max(driver.timeout, 2 * (calls / rate + hold_seconds) + 30.0)
        self._uas: UasHandle | None = None
        self._load: LoadHandle | None = None
        self.result: PhoneLoadResult | None = None

    def __enter__(self) -> PhoneLoad:
        self._uas = self.driver.answer(
            self.callee.ext,
            calls=self.calls,
            timeout=self.timeout,
            rtp_echo=True,
            password=self.callee.password,
        )
        try:
            assert self._uas.registration is not None
            self._uas.registration.check()
            self._load = self.driver.start_call_load(
                self.caller.ext,
                self.caller.password,
                self.callee.ext,
                calls=self.calls,
                rate=self.rate,
                limit=self.limit,
                hold_seconds=self.hold_seconds,
                timeout=self.timeout,
                audio=self.audio,
            )
        except BaseException:
            self._uas.stop()
            raise
        return self

    def run(self) -> PhoneLoadResult:
        """Run the whole load and return its figures (no watching)."""
        with self:
            return self.wait()

    def running(self) -> bool:
        """True while the caller is still placing or holding calls."""
        return self._load is not None and self._load.running()

    def wait(self) -> PhoneLoadResult:
        """Wait for the caller's calls to end, then for the callee's, and stop both."""
        if self.result is None:
            if self._load is None or self._uas is None:
                raise SippError("PhoneLoad.wait() outside its with block")
            load = self._load.wait()
            callee = self._uas.wait(timeout=30.0)
            self.result = PhoneLoadResult(self.calls, self.rate, load, callee)
        return self.result

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._load is not None and self._load.running():
            self._load.sipp.kill()
            self._load.wait()
        if self._uas is not None:
            self._uas.stop()

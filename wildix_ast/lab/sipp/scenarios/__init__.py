"""The SIPp scenarios wildix-ast plays, one XML file per role, and the edits the driver
makes to them before a run (hold or ring time, media playback).

A UAC scenario (``register``, ``call``, ``cancel``, ``phone``) is the main scenario of a
SIPp client; a UAS behaviour (:data:`UAS_BEHAVIOURS`) is the scenario of a plain UAS, or
the out-of-call scenario (``-oocsf``) of a self-registering phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from wildix_ast.lab.sipp.errors import SippError

#: where uac_call.xml takes the driver's pcap playback (audio, DTMF)
MEDIA_MARK = "<!-- wildix-ast media: the driver puts its pcap playback (audio, DTMF) here -->"


@dataclass(frozen=True)
class Scenario:
    """One shipped scenario file and the places the driver may rewrite in it."""

    file: str
    #: the pause the driver sets (a call's hold, the ring time before CANCEL): the
    #: number between the pattern's two groups, found ``wait_count`` times
    wait: re.Pattern[str] | None = None
    wait_count: int = 1
    #: whether it has :data:`MEDIA_MARK`
    media: bool = False

    @property
    def path(self) -> Path:
        """The file, inside the installed package."""
        path = Path(str(resources.files(__name__).joinpath(self.file)))
        if not path.is_file():
            raise SippError(f"SIPp scenario {self.file} not found at {path}")
        return path

    def edited(self, *, wait_ms: int | None = None, media: str = "") -> str:
        """The scenario's text with its pause set to ``wait_ms`` and ``media`` (SIPp
        elements) at its media mark."""
        text = self.path.read_text()
        if wait_ms is not None:
            count = 0
            if self.wait is not None:
                text, count = self.wait.subn(rf"\g<1>{max(1, wait_ms)}\g<2>", text)
            if count != self.wait_count or self.wait is None:
                raise SippError(f"{self.path}: no hold/ring time to set")
        if media:
            if not self.media or text.count(MEDIA_MARK) != 1:
                raise SippError(f"{self.path}: no place for media")
            text = text.replace(MEDIA_MARK, media)
        return text


REGISTER = Scenario("register.xml")
PHONE = Scenario("phone.xml")
#: a call: the hold is the timeout of the wait for the far end's BYE
CALL = Scenario(
    "uac_call.xml",
    wait=re.compile(r'(<recv request="BYE" timeout=")\d+(" ontimeout="local_hangup")'),
    media=True,
)
#: a call given up while ringing: one ring-time pause per INVITE attempt
CANCEL = Scenario(
    "uac_cancel.xml",
    wait=re.compile(r'(<pause milliseconds=")\d+("/><!-- ring time -->)'),
    wait_count=2,
)

Behaviour = Literal["answer", "busy", "ignore", "unavailable", "registrar", "transfer"]


@dataclass(frozen=True)
class UasBehaviour:
    scenario: Scenario
    #: the final status it refuses a call with (ACKed by the caller), or None when it
    #: answers 200 and the call ends with a BYE
    refuses_with: int | None
    #: a registrar handles REGISTERs, not calls: done once it gave a final answer
    registrar: bool = False


#: what a UAS does with an INVITE: answer (180, 200 + SDP, waits for the BYE), busy
#: (486), ignore (180 until the CANCEL, then 487)
UAS_BEHAVIOURS: dict[Behaviour, UasBehaviour] = {
    "answer": UasBehaviour(Scenario("uas_answer.xml", media=True), None),
    "busy": UasBehaviour(Scenario("uas_busy.xml"), 486),
    "ignore": UasBehaviour(Scenario("uas_ring.xml"), 487),
    # SIP providers for trunks: refuses every call (a trunk group fails over), and a
    # registrar that challenges the REGISTER and checks it against -key secret
    "unavailable": UasBehaviour(Scenario("uas_unavailable.xml"), 503),
    "registrar": UasBehaviour(Scenario("uas_registrar.xml"), None, registrar=True),
    # a phone that answers, then blind-transfers the caller (REFER) to -key target
    "transfer": UasBehaviour(Scenario("uas_transfer.xml"), None),
}

ALL: tuple[Scenario, ...] = (
    REGISTER, PHONE, CALL, CANCEL, *(b.scenario for b in UAS_BEHAVIOURS.values()),
)


def scenario_path(name: str) -> Path:
    """The path of a scenario file shipped here, by file name."""
    for scenario in ALL:
        if scenario.file == name:
            return scenario.path
    raise SippError(f"SIPp scenario {name} not found in {__name__}")

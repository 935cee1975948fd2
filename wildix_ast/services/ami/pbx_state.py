"""What the PBX looks like now, from AMI: device states (a user's phone green/gray), SIP
contacts, channels in progress. Built from a snapshot at each (re)connection and kept up by
events; the functions here are pure (an event in, the changed state out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

AmiMessage = Mapping[str, str]


@dataclass(frozen=True)
class Channel:
    uniqueid: str
    name: str
    state: str = ""
    linkedid: str = ""
    caller: str = ""
    exten: str = ""
    context: str = ""


@dataclass(frozen=True)
class PbxState:
    devices: Mapping[str, str] = field(default_factory=dict)   # "PJSIP/101" -> "NOT_INUSE"
    contacts: Mapping[str, str] = field(default_factory=dict)  # "101/sip:..." -> "Reachable"
    channels: Mapping[str, Channel] = field(default_factory=dict)
    version: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "devices": dict(sorted(self.devices.items())),
            "contacts": dict(sorted(self.contacts.items())),
            "channels": [vars(c) for c in sorted(self.channels.values(),
                                                 key=lambda c: c.uniqueid)],
        }


def _channel(event: AmiMessage) -> Channel:
    return Channel(uniqueid=event.get("Uniqueid", ""), name=event.get("Channel", ""),
                   state=event.get("ChannelStateDesc", ""), linkedid=event.get("Linkedid", ""),
                   caller=event.get("CallerIDNum", ""), exten=event.get("Exten", ""),
                   context=event.get("Context", ""))


def snapshot(version: str, devices: Iterable[AmiMessage], contacts: Iterable[AmiMessage],
             channels: Iterable[AmiMessage]) -> PbxState:
    """The state from the answers of DeviceStateList, PJSIPShowContacts and
    CoreShowChannels."""
    return PbxState(
        version=version,
        devices={e["Device"]: e.get("State", "") for e in devices if e.get("Device")},
        contacts={f"{e.get('Aor', '')}/{e.get('Uri', '')}": e.get("Status", "")
                  for e in contacts if e.get("Uri")},
        channels={c.uniqueid: c for c in map(_channel, channels) if c.uniqueid},
    )


def apply_event(state: PbxState, event: AmiMessage) -> PbxState:
    """The state after one AMI event (unrelated events return `state` itself)."""
    name = event.get("Event", "")
    if name == "DeviceStateChange" and event.get("Device"):
        return replace(state, devices={**state.devices, event["Device"]: event.get("State", "")})
    if name == "ContactStatus" and event.get("URI"):
        key = f"{event.get('AOR', '')}/{event['URI']}"
        contacts = dict(state.contacts)
        if event.get("ContactStatus") == "Removed":
            contacts.pop(key, None)
        else:
            contacts[key] = event.get("ContactStatus", "")
        return replace(state, contacts=contacts)
    uniqueid = event.get("Uniqueid", "")
    if not uniqueid:
        return state
    if name == "Newchannel":
        return replace(state, channels={**state.channels, uniqueid: _channel(event)})
    if name in ("Newstate", "NewCallerid", "Newexten") and uniqueid in state.channels:
        current = state.channels[uniqueid]
        updated = replace(current, state=event.get("ChannelStateDesc", current.state),
                          caller=event.get("CallerIDNum", current.caller),
                          exten=event.get("Exten", current.exten),
                          context=event.get("Context", current.context))
        if updated == current:
            return state
        return replace(state, channels={**state.channels, uniqueid: updated})
    if name == "Hangup" and uniqueid in state.channels:
        return replace(state, channels={k: v for k, v in state.channels.items()
                                        if k != uniqueid})
    return state

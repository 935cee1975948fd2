"""FastAGI wire format and the pure decisions, without Asterisk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wildix_ast.calls import variables as v
from wildix_ast.calls.popup_url import PopupCall, expand, substring
from wildix_ast.services.agi.probe import handshake
from wildix_ast.services.agi.protocol import (
    MAX_LINE_BYTES,
    AgiProtocolError,
    format_command,
    mset_argument,
    parse_header_line,
    parse_mset,
    parse_request,
    parse_response,
    quote_argument,
    split_command,
)
from wildix_ast.services.agi.routes import popup
from wildix_ast.services.agi.server import Decision


def lines_of(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


def test_request_from_an_asterisk_handshake() -> None:
    request = parse_request(lines_of(handshake("prefs/forward?class=external", ["102", "a b"])))
    assert request.route == "prefs/forward"
    assert request.params == {"class": "external"}
    assert request.args == ("102", "a b")
    assert request.callerid == "101" and request.calleridname == "Alice"
    assert request.channel == "PJSIP/101-00000001" and request.uniqueid == "1700000000.1"
    assert request.extension == "102" and request.context == "users"


def test_unknown_caller_id_is_empty() -> None:
    request = parse_request(lines_of(handshake("x", headers={"agi_callerid": "unknown"})))
    assert request.callerid == ""


def test_route_from_agi_request_when_network_script_is_missing() -> None:
    request = parse_request([b"agi_request: agi://127.0.0.1:4573/health?x=1"])
    assert request.route == "health" and request.params == {"x": "1"}


@pytest.mark.parametrize("line", [
    b"GET / HTTP/1.1", b"agi_network yes", b"Agi_Network: yes", b": yes", b"\x00\x01",
    b"agi_" + b"x" * 70 + b": 1", b"agi_x: " + b"y" * MAX_LINE_BYTES,
])
def test_garbage_handshake_lines_are_refused(line: bytes) -> None:
    with pytest.raises(AgiProtocolError):
        parse_header_line(line)


def test_handshake_without_a_route_is_refused() -> None:
    with pytest.raises(AgiProtocolError, match="agi_network_script"):
        parse_request([b"agi_network: yes"])


def test_caller_name_with_invalid_utf8_is_kept_readable() -> None:
    assert parse_header_line(b"agi_calleridname: St\xe9phane") == ("agi_calleridname",
                                                                     "St\ufffdphane")


@pytest.mark.parametrize(("line", "code", "result", "data", "extras"), [
    ("200 result=1", 200, "1", None, {}),
    ("200 result=0", 200, "0", None, {}),
    ("200 result=-1", 200, "-1", None, {}),
    ("200 result=1 (Stéphane Durand)", 200, "1", "Stéphane Durand", {}),
    ("200 result= (timeout)", 200, "", "timeout", {}),
    ("200 result=0 endpos=8000", 200, "0", None, {"endpos": "8000"}),
    ("200 result=-1 (hangup) endpos=12", 200, "-1", "hangup", {"endpos": "12"}),
    ("510 Invalid or unknown command", 510, "", None, {}),
    ("511 Command Not Permitted on a dead channel or intercept routine", 511, "", None, {}),
    ("520-Invalid command syntax.  Proper usage follows:", 520, "", None, {}),
])
def test_answers(line: str, code: int, result: str, data: str | None,
                 extras: dict[str, str]) -> None:
    response = parse_response(line)
    assert (response.code, response.result, response.data, dict(response.extras)) == \
        (code, result, data, extras)


@pytest.mark.parametrize("line", ["", "HELLO", "20 result=1", "200 nothing", "2000 result=1"])
def test_garbage_answers_are_refused(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_response(line)


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00",
                                               blacklist_categories=("Cs",))), max_size=5))
def test_arguments_survive_asterisk_parsing(args: list[str]) -> None:
    """What we quote, Asterisk's parse_args (mirrored by split_command) reads back as is."""
    line = format_command("SET VARIABLE", *args).decode("utf-8").rstrip("\n")
    assert split_command(line) == ["SET", "VARIABLE", *args]


@pytest.mark.parametrize("bad", ["a\nHANGUP", "a\rb", "a\x00b"])
def test_line_breaks_cannot_reach_the_wire(bad: str) -> None:
    with pytest.raises(ValueError):
        quote_argument(bad)


def test_command_verbs_are_ours_only() -> None:
    with pytest.raises(ValueError):
        format_command("EXEC Dial", "x")
    with pytest.raises(ValueError):
        format_command("SET VARIABLE\n", "x")


def test_decision_variables_are_checked() -> None:
    with pytest.raises(ValueError, match="channel variable"):
        Decision({"BAD NAME": "1"})
    with pytest.raises(ValueError, match="set by the server"):
        Decision({"WILDIX_AGI_STATUS": "OK"})


# -- popup URL (WMS user preferences) --------------------------------------------------------

CALL = PopupCall(caller_number="+33123456789", caller_name="Élise Martin", user_number="102",
                 user_name="Bob", call_type="external", tags=("vip", "fr"))


@pytest.mark.parametrize(("template", "expanded"), [
    ("https://crm/?n={CALLERNUM}", "https://crm/?n=%2B33123456789"),
    ("https://crm/?n={CALLERNUM:1}", "https://crm/?n=33123456789"),
    ("{CALLERNUM:-4}", "6789"),
    ("{CALLERNUM:1:2}", "33"),
    ("{CALLERNUM:0:-3}", "%2B33123456"),
    ("{CALLERNAME}|{USERNUM}|{USERNAME}|{CALLTYPE}|{TAGS}",
     "%C3%89lise%20Martin|102|Bob|external|vip%2Cfr"),
    ("{UNKNOWN} {callernum}", "{UNKNOWN} {callernum}"),
    ("", ""),
])
def test_popup_url(template: str, expanded: str) -> None:
    assert expand(template, CALL) == expanded


@pytest.mark.parametrize(("offset", "length", "out"), [
    (0, None, "12345"), (2, None, "345"), (9, None, ""), (-2, None, "45"), (-9, None, "12345"),
    (1, 2, "23"), (1, -1, "234"), (1, -9, ""),
])
def test_substring_like_asterisk(offset: int, length: int | None, out: str) -> None:
    assert substring("12345", offset, length) == out


def test_popup_route_adapts_the_request() -> None:
    request = parse_request(lines_of(handshake(
        "popup", ["https://crm/{CALLERNUM}/{USERNUM}/{USERNAME}/{TAGS}", "", "Bob", "internal",
                  "a,,b"])))
    assert popup(request) == Decision({v.POPUP_URL: "https://crm/101/102/Bob/a%2Cb"})


@pytest.mark.parametrize("value", ["", "plain", "a,b", 'say "hi"', "f(x,y)", "[1,2]",
                                   "back\\slash", "${EXTEN}$[1+1]", "k=v,w=z", "é ü 中",
                                   "\\,\\\\\\", ")(", '"'])
def test_mset_argument_round_trips_through_asterisks_parser(value: str) -> None:
    variables = {"WILDIX_X": value, "WILDIX_Y": "2", "WILDIX_AGI_STATUS": "OK"}
    assert parse_mset(mset_argument(variables)) == variables
    assert list(parse_mset(mset_argument(variables))) == list(variables)  # order kept


def test_mset_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError):
        mset_argument({"bad name": "x"})
    with pytest.raises(ValueError):
        mset_argument({f"V{i}": "x" for i in range(25)})

"""Fax over SIP from the settings (issue 20, docs/fax.md "Transport"): a trunk's `fax`
option renders T.38 (UDPTL, error correction, datagram size, NAT) or refuses it, a fax trunk
must prefer G.711, fax users' endpoints get G.711 only and T.38, and the store keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from test_render import EXAMPLE, SECRET, pjsip_object

from wildix_ast.asterisk.render import render_site
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import T38ErrorCorrection, Trunk, TrunkFax
from wildix_ast.store import open_store
from wildix_ast.store.vault import MemoryVault, with_secrets


def _site(**fax: object) -> Site:
    site = with_secrets(load_site(EXAMPLE), MemoryVault())
    trunk = Trunk(name="faxline", auth="ip", host="127.0.0.3", port=5070,
                  **fax)  # type: ignore[arg-type]
    return site.model_copy(update={"trunks": [*site.trunks, trunk]})


def test_a_t38_trunk_renders_udptl_with_its_error_correction_and_datagram() -> None:
    files = render_site(_site(fax="t38", t38_error_correction="fec", t38_max_datagram=320),
                        manager_secret=SECRET)
    endpoint = pjsip_object(files, "trunk-faxline", "endpoint")
    assert endpoint["t38_udptl"] == ["yes"]
    assert endpoint["t38_udptl_ec"] == ["fec"]
    assert endpoint["t38_udptl_maxdatagram"] == ["320"]
    assert endpoint["t38_udptl_nat"] == ["yes"]
    assert endpoint["allow"] == ["alaw,ulaw"]
    # the other trunks carry no fax: T.38 stays off there
    assert "t38_udptl" not in pjsip_object(files, "trunk-operateur", "endpoint")
    assert "udptlfecentries = 3" in files["udptl.conf"]


@pytest.mark.parametrize("fax", ["g711", "none"])
def test_a_g711_or_no_fax_trunk_refuses_t38(fax: str) -> None:
    files = render_site(_site(fax=fax), manager_secret=SECRET)
    endpoint = pjsip_object(files, "trunk-faxline", "endpoint")
    assert not any(key.startswith("t38") for key in endpoint)


@pytest.mark.parametrize("fax", ["g711", "t38"])
def test_a_fax_trunk_must_prefer_g711(fax: str) -> None:
    with pytest.raises(ValidationError, match="alaw or ulaw first"):
        Trunk(name="faxline", auth="ip", host="127.0.0.3", fax=fax,  # type: ignore[arg-type]
              codecs=["opus", "alaw"])
    # a trunk without fax may prefer what it likes
    Trunk(name="voice", auth="ip", host="127.0.0.3", codecs=["opus", "alaw"])  # type: ignore[list-item]


@pytest.mark.parametrize("bad", [{"fax": "t.38"}, {"t38_max_datagram": 99},
                                 {"t38_max_datagram": 1401}, {"t38_error_correction": "x"}])
def test_bad_fax_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Trunk(name="faxline", auth="ip", host="127.0.0.3", **bad)  # type: ignore[arg-type]


def test_the_store_keeps_a_trunks_fax_settings(tmp_path: Path) -> None:
    site = _site(fax="t38", t38_error_correction="redundancy", t38_max_datagram=1200)
    with open_store(str(tmp_path / "s.sqlite3")) as store:
        store.import_site(site)
        back = next(t for t in store.export_site().trunks if t.name == "faxline")
    assert back.fax is TrunkFax.T38
    assert back.t38_error_correction is T38ErrorCorrection.REDUNDANCY
    assert back.t38_max_datagram == 1200

"""WMS Serveur FAX/SMS: the fax server's settings (Fax2Mail's copy address)."""

from __future__ import annotations

from pydantic import BaseModel

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Email


class FaxServer(BaseModel):
    """Who gets a copy of every fax (WMS "Adresse de copie"): besides the fax user's own
    address, every received fax and every reception report is mailed here too."""

    model_config = STRICT

    copy_address: Email | None = None

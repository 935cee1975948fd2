"""WMS Serveur FAX/SMS: the fax server's settings (Fax2Mail's copy address, how long
finished fax jobs are kept)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Email


class FaxServer(BaseModel):
    """Who gets a copy of every fax (WMS "Adresse de copie"): besides the fax user's own
    address, every received fax and every reception report is mailed here too."""

    model_config = STRICT

    copy_address: Email | None = None
    keep_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Finished fax jobs (the spool's `done/` and `bad/`: the TIFF and its record) are
    deleted by the fax service this many days after they finished. The PDF kept for the
    call history follows `call_history.retention_days` instead."""

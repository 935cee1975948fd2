"""The fax server (WMS Serveur FAX/SMS): Fax2Mail (inbound.py)."""

"""The fax server (WMS Serveur FAX/SMS): Fax2Mail (inbound.py), the serving loop
(service.py), the documents kept for the call history and the retention (documents.py)."""

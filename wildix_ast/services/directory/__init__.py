"""The company directory service: LDAP / Active Directory sync through ldap3
(docs/directory.md)."""

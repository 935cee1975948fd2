"""The provisioning server (`wildix-ast provisioning serve`): each phone's configuration
file, rendered per vendor (`render`), served over HTTPS only to a phone that proves itself
with its own link's credential or is enrolled in an open window (`server`), and a source
that asks for too many unknown or unauthorised files banned through the SIP ban file
(`guard`). docs/provisioning.md."""

"""Call-time decisions, pure functions of the model and one call: what a call to a user
does (`call_user`), its mobility leg (`mobility`), the popup URL (`popup_url`), the
missed-call mail (`missed_calls`). The FastAGI service adapts them; the dialplan acts on
their answers.

Layer 4: imports the model and the store, never the services, Asterisk generation or the
CLI."""

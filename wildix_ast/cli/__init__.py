"""The `wildix-ast` command: `main` (the verbs over the model, store and apply, and the
mounting of the verb groups), one module per verb group (`lab`, `agi`, `runtime`, `live`:
status, test-call and security, `users`: user set/show), and `console` (what a person
reads: tables, colours, errors without tracebacks, `--json`).

Layer 9, the top: may import every layer; nothing imports it."""

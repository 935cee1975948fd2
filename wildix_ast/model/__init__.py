"""The WMS model: one module per WMS menu (system, users, groups, dialplan, trunks,
procedures, call classes, time frames, call groups, IVRs, sounds, preferences, feature codes),
the site that gathers them (`sections`, `site`) and its cross-section rules (`references`,
`routing`, `dialplan_rules`), the boundary of what may reach a generated file (`fields`),
and the settings file (`settings_file`).

Layer 1: imports only the plumbing at the top of the package (`errors`, `files`, ...).
Everything else reads the model; the model reads nothing of theirs."""

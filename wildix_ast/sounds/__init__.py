"""The sound files of a site (WMS "Sons"): converted by sox (`audio`), placed under
Asterisk's data folder (`install`), and Asterisk's own prompts per language
(`prompts`). The model of a sound is `model.sounds`.

Layer 2: imports the model."""

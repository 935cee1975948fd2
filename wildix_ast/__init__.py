"""wildix-ast: the Wildix WMS administration model driving a plain Asterisk 22.

Layers are folders, lowest first; a module imports its own layer and the ones below
(`tests/unit/test_layers.py` fails otherwise, and on any import circle):

0. plumbing here: `errors`, `files`, `cache`, `conf` (Asterisk's .conf syntax), `ami` (the
   AMI client), `testing.crash_points`;
1. `model/`: the WMS model and the settings file;
2. `sounds/`: sound files; 3. `store/`: the store; 4. `calls/`: call-time decisions;
5. `asterisk/`: the generated files; 6. `apply/`: plan, commit, rollback and the use cases;
7. `services/`: FastAGI and the AMI service; 8. `lab/`: the lab Asterisk and SIPp phones;
9. `cli/`: the command (and `testing.deploy_host`).

Data flows one way: settings file -> model -> store -> render -> apply -> Asterisk; the
services read the store."""

import os

__version__ = "0.1.0"

# pydantic looks for its plugins through every installed distribution's entry points the
# first time a model is built: a tenth of a second of each `wildix-ast` process, for
# plugins this project does not use. Setting the variable yourself still decides.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

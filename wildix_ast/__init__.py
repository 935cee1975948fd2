"""wildix-ast: the Wildix WMS administration model driving a plain Asterisk 22."""

import os

__version__ = "0.1.0"

# pydantic looks for its plugins through every installed distribution's entry points the
# first time a model is built: a tenth of a second of each `wildix-ast` process, for
# plugins this project does not use. Setting the variable yourself still decides.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

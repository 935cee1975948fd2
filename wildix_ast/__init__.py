"""wildix-ast: the Wildix WMS administration model driving a plain Asterisk 22."""

__version__ = "0.1.0"

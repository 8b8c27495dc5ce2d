"""The imperative shell: Faust app, sink, web, CLI."""

__version__ = "0.1.0"

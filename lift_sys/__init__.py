"""lift-sys: natural language -> typed IR -> code, with schema-constrained decoding."""

__version__ = "0.1.0"

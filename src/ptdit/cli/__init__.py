"""Command-line interface (thin: parse -> config -> library call)."""

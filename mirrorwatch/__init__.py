"""mirrorwatch: a passive network IDS for a switch's mirror (SPAN) port, with TCP-reset blocking."""

__version__ = "0.1.0"

"""Terminal user interface: the live session table."""

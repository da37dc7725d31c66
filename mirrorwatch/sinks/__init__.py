"""Sinks that turn core events into text: EVE JSON, fast.log, console lines and the summary.

Shared helpers for the text forms Suricata uses (timestamps, protocol names,
addresses) live in ``fmt`` so that every sink writes exactly the same values.
"""

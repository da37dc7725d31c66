"""Inline (IPS) mode around the engine: the netfilter rules, the verdicts, the fail-open bypass.

``firewall``: the engine's own chain (flow drop, flow bypass, the bypass
switch, NFQUEUE) and its rule counters.  ``verdicts``: the core's verdicts
applied to a queue (batch accepts, NF_REPEAT with marks).  ``sensor``: the
queues, firewall, watchdog and accounts behind ``mirrorwatch inline``.
``watchdog``: a separate process that switches to bypass and releases held
packets when the engine stalls or dies.  The queue client itself is
``mirrorwatch.sources.nfqueue`` (its messages: ``sources.nfnetlink``, compiled);
each packet's verdict is decided by
``mirrorwatch.core.inline``.
"""

"""Exception policies: what the engine does with a session when it meets an exception, as Suricata 7.

An exception is a condition the engine cannot handle as it would like to: a
TCP session whose handshake it did not see (``stream_midstream``).  Suricata
lets the operator choose, per target, a policy (``exception-policy`` is the
master switch, ``stream.midstream-policy`` the midstream target's own):

- ``ignore``: go on as without a policy (the built-in default in IDS mode);
- ``pass-flow``: the session is no longer inspected by rules (its traffic is
  still tracked and its application layer still parsed and logged);
- ``bypass``: the session is bypassed: nothing of it is tracked, parsed or
  inspected any more (its flow record says ``"state": "bypassed"``);
- ``drop-flow``/``drop-packet``/``reject``/``rejectboth``: IPS only (inline).
  In IDS mode the master switch's drop policies mean ``ignore``, and a
  target's own drop-flow is an error, as in Suricata.  Suricata's reject
  sends resets; here resets come only from rules (``--kill``, inline
  ``reject`` rules), so a reject policy is drop-flow inline and ignore in IDS
  mode.
- ``auto``: ``drop-flow`` in IPS mode while midstream pick-up is off, else
  ``ignore``.

With ``stream.midstream`` on, the midstream target may only be ``ignore`` or
``pass-flow`` when set directly (Suricata refuses the rest); through the
master switch any policy applies, and a session is picked up only under
``ignore`` or ``pass-flow``.  Every session a policy was applied to records
its target and the target's policy (``Flow.eps``), and its flow record lists
them when ``eve-log.flow.exception-policy`` is on
(``"exception_policy": [{"target": "stream_midstream", "policy": "ignore"}]``).

Suricata's memcap and application-layer error targets (``flow.memcap-policy``,
``stream.memcap-policy``, ``stream.reassembly.memcap-policy``,
``defrag.memcap-policy``, ``app-layer.error-policy``) are not implemented:
mirrorwatch's own bounds decide there (emergency mode, reclaiming).
"""

from __future__ import annotations

from mirrorwatch.core.settings import SettingError

IGNORE, PASS_FLOW, BYPASS, DROP_FLOW = "ignore", "pass_flow", "bypass", "drop_flow"
DROP_PACKET, PASS_PACKET, REJECT, REJECT_BOTH = "drop_packet", "pass_packet", "reject", "reject_both"
AUTO = "auto"
# configuration value -> policy (the EVE name, Suricata's ExceptionPolicyEnumToString(.., true))
VALUES = {"ignore": IGNORE, "pass-flow": PASS_FLOW, "bypass": BYPASS, "drop-flow": DROP_FLOW,
          "drop-packet": DROP_PACKET, "pass-packet": PASS_PACKET, "reject": REJECT, "rejectboth": REJECT_BOTH,
          "auto": AUTO}
MASTER_KEY = "exception-policy"
MIDSTREAM_KEY = "stream.midstream-policy"

# targets, by their EVE names
MIDSTREAM = "stream_midstream"

# policies under which a midstream session is still picked up (stream.midstream on)
PICKUP_POLICIES = frozenset((IGNORE, PASS_FLOW))


def _value(key: str, text) -> str:
    policy = VALUES.get(str(text).strip().lower())
    if policy is None:
        raise SettingError(f"{key}: {text!r} is not a valid exception policy (one of {', '.join(VALUES)})")
    return policy


def _auto(ips: bool, midstream: bool) -> str:
    """Suricata's ExceptionPolicyPickAuto (for a target that supports flow actions)."""
    return DROP_FLOW if ips and not midstream else IGNORE


def midstream_policy(settings, ips: bool) -> str:
    """The midstream target's policy: ExceptionPolicyMidstreamParse; SettingError when Suricata refuses it."""
    midstream = bool(settings["stream.midstream"])
    own = settings[MIDSTREAM_KEY]
    if own:
        policy = _value(MIDSTREAM_KEY, own)
        if policy == AUTO:
            policy = _auto(ips, midstream)
        elif midstream and policy not in PICKUP_POLICIES:
            raise SettingError(f"{MIDSTREAM_KEY}: {own!r} is not valid while stream.midstream is on "
                               "(pass-flow or ignore)")
        if not ips and policy == DROP_FLOW:
            raise SettingError(f"{MIDSTREAM_KEY}: {own!r} is not valid in IDS mode (replay, listen)")
    else:
        policy = _value(MASTER_KEY, settings[MASTER_KEY])
        if not ips and policy in (DROP_PACKET, DROP_FLOW):
            policy = IGNORE  # the master switch's drops mean nothing in IDS mode
        if policy == AUTO:
            policy = _auto(ips, midstream)
    if policy in (PASS_PACKET, DROP_PACKET):
        raise SettingError(f"{MIDSTREAM_KEY}: {policy.replace('_', '-')} is not valid for the midstream target")
    if policy in (REJECT, REJECT_BOTH):
        # Suricata's reject answers with resets, in IDS mode too; here a session is reset only by a rule
        # (--kill, inline reject), so a reject policy drops the session inline and is ignore in IDS mode
        policy = DROP_FLOW if ips else IGNORE
    return policy


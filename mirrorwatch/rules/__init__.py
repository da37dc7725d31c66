"""The rules room: signature text -> plain ``Rule`` objects (see ``model``).

``load_rules(paths, settings)`` parses Suricata/Snort rule files; rules the
engine cannot evaluate are reported in ``RuleSet.skipped`` with a reason;
``check_report(ruleset)`` is the text of ``mirrorwatch rules check``.

Language covered (Suricata's meaning throughout):

- header: actions alert/pass/drop/reject/rejectsrc/rejectdst/rejectboth;
  protocols tcp, udp, icmp, icmpv4, icmpv6, ip and the aliases tcp-pkt,
  tcp-stream, ipv4/ip4, ipv6/ip6; addresses and ports with lists, nesting,
  negation, ranges and ``$VARIABLES`` (``--set vars.address-groups.X=...``);
  ``->`` and ``<>``.  Application-layer headers (http, dns, tls...) are
  skipped: ``unsupported protocol 'http'``.
- meta: msg, sid, gid, rev, classtype (classification.config), priority,
  reference, metadata, target, tag, noalert.
- payload (``detect.payload``): content with nocase/offset/depth/distance/
  within/fast_pattern/rawbytes/startswith/endswith, pcre (translated, see
  ``rules.pcre``), byte_test, byte_jump, byte_extract, byte_math, isdataat,
  bsize, pkt_data, prefilter.
- flow/state: flow, flowbits, threshold, detection_filter, dsize, flags /
  tcp.flags.
- header checks (``Rule.header_checks``): ttl, itype, icode, icmp_id,
  icmp_seq, ip_proto, id, seq, ack, window, tos, fragoffset, fragbits,
  ipopts, sameip, stream_size, tcp.mss, tcp.wscale, icmpv6.mtu.

Sticky buffers and http modifiers (http.uri, http_uri, file_data, dns.query,
...), datasets, lua, xbits, flowint... make a rule ``unsupported keyword 'x'``;
a word that is no keyword at all is ``unknown keyword 'x'``.
"""

from .loader import RuleSet, check_report, format_skip, load_rules, load_text
from .parser import RuleContext, RuleError, parse_rule

__all__ = ["RuleSet", "RuleContext", "RuleError", "check_report", "format_skip", "load_rules", "load_text", "parse_rule"]

"""The rules room: signature text -> plain ``Rule`` objects (see ``model``).

``load_rules(paths, settings)`` parses Suricata/Snort rule files; rules the
engine cannot evaluate are reported in ``RuleSet.skipped`` with a reason;
``check_report(ruleset)`` is the text of ``mirrorwatch rules check``.

Language covered (Suricata's meaning throughout; module by module):

- ``options``: splitting a rule into header tokens and options exactly as
  Suricata (and stricter where a damaged rule would load with another meaning);
- header (``parser``): actions, protocols tcp, udp, icmp, icmpv6, ip and their
  aliases, the application protocols http/http1, dns, tls/ssl, ssh, smtp, ftp,
  smb, dcerpc (``Rule.app_proto``); addresses and ports with lists, negation,
  ranges and ``$VARIABLES`` (``addresses``);
- keywords, one table (``keywords.TABLE``) filled by family: ``kw_meta``
  (msg, sid, classtype, reference, metadata...), ``kw_payload`` (content and
  modifiers, pcre on PCRE2 (``pcre``), isdataat, bsize, pkt_data),
  ``kw_bytes`` (byte_test/jump/extract/math), ``kw_flow`` (flow, flowbits,
  threshold, dsize, flags, header keywords), ``kw_app`` (sticky buffers,
  legacy http modifiers, transforms, urilen, tls/dns value keywords),
  ``kw_xbits`` (xbits, hostbits: bits per host or IP pair), ``kw_flowint``
  (integers per flow), ``kw_base64`` (base64_decode, base64_data);
- ``state``: which buffer each payload keyword inspects; ``validate``: the
  whole-rule checks; ``buffers``: the application-layer tables.

Datasets, lua, flowvar, asn1... make a rule ``unsupported keyword
'x'``; a word that is no keyword at all is ``unknown keyword 'x'``.
"""

from .loader import RuleSet, check_report, format_skip, load_rules, load_text
from .parser import RuleContext, RuleError, parse_rule

__all__ = ["RuleSet", "RuleContext", "RuleError", "check_report", "format_skip", "load_rules", "load_text", "parse_rule"]

"""The rules room: signature text -> plain ``Rule`` objects (see ``model``).

``load_rules(paths, settings)`` parses Suricata/Snort rule files; rules the
engine cannot evaluate are reported in ``RuleSet.skipped`` with a reason;
``check_report(ruleset)`` is the text of ``mirrorwatch rules check``.
"""

from .loader import RuleSet, check_report, format_skip, load_rules, load_text
from .parser import RuleContext, RuleError, parse_rule

__all__ = ["RuleSet", "RuleContext", "RuleError", "check_report", "format_skip", "load_rules", "load_text", "parse_rule"]

"""The netfilter rules that put the engine inline (NFQUEUE), with a fail-open switch.

The firewall owns one chain (``MIRRORWATCH``) per family, jumped to from the
hook chain (FORWARD, INPUT or OUTPUT of the filter table), and a second one
(``MIRRORWATCH-BYPASS``) that is the bypass switch.  In order::

    0. a packet with MARK_INJECTED (the engine's own RST/FIN segments)  -> ACCEPT
    1. a packet that comes back with a verdict mark (the engine's NF_REPEAT
       verdict set MARK_FLOW_DROP or MARK_FLOW_BYPASS) saves it into the
       connection's mark: the kernel remembers the flow's verdict
    2. connmark has MARK_FLOW_DROP                  -> DROP (also after the engine is gone)
       packet mark has MARK_FLOW_DROP (no conntrack) -> DROP
    3. connmark has MARK_FLOW_BYPASS                -> ACCEPT (pass rule, depth exceeded)
       packet mark has MARK_FLOW_BYPASS             -> ACCEPT
    4. jump to MIRRORWATCH-BYPASS: empty when inline, one ACCEPT rule when in bypass
    5. NFQUEUE --queue-num N | --queue-balance A:B, --queue-bypass (no listener: accept;
       left out for fail-closed: no listener, no traffic)

Every rule counts the packets it takes (``counters``): packets queued, passed
by the bypass switch, dropped and passed by flow, injected.

Backends: ``iptables`` (whatever the system's iptables is), ``iptables-nft``,
``iptables-legacy``, or ``nft`` (one ``inet mirrorwatch`` table; needs the
kernel's nft queue expression, CONFIG_NFT_QUEUE).  ``auto`` takes nft when
the kernel accepts a queue rule (checked with ``nft --check``), else iptables.

The rules are built by pure functions (``iptables_commands``,
``nft_ruleset``); ``Firewall`` runs them and records what it installed in
``<run_dir>/firewall.json`` so that ``mirrorwatch bypass`` and the watchdog
can act on it from another process (``record`` alone when the operator
installs the rules: ``--no-firewall``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

# -- settings (defaults) -----------------------------------------------------------
MARK_FLOW_DROP = 0x4000_0000     # inline.drop-mark: packet/conn mark bit "drop this flow"
MARK_FLOW_BYPASS = 0x2000_0000   # nfq.bypass-mark (Suricata): packet/conn mark bit "pass this flow"
MARK_INJECTED = 0x1000_0000      # inline.injected-mark: the engine's own forged segments
CHAIN = "MIRRORWATCH"            # inline.chain: the firewall's own chain (and table for nft)
DEFAULT_RUN_DIR = "/run/mirrorwatch"
COMMAND_TIMEOUT = 10.0           # s for one iptables/nft command

HOOK_CHAINS = {"forward": "FORWARD", "input": "INPUT", "output": "OUTPUT"}
IPTABLES_BINARIES = {
    "iptables": {4: "iptables", 6: "ip6tables"},
    "iptables-nft": {4: "iptables-nft", 6: "ip6tables-nft"},
    "iptables-legacy": {4: "iptables-legacy", 6: "ip6tables-legacy"},
}
BACKENDS = (*IPTABLES_BINARIES, "nft")
NFT_FAMILY = {4: "ipv4", 6: "ipv6"}
STATE_FILE = "firewall.json"
# the rules (1-based positions in the own chain) each counter adds up, per backend
COUNTER_RULES = {
    "iptables": {"injected": (1,), "flow_dropped": (3, 4), "flow_bypassed": (5, 6), "to_switch": (7,),
                 "queued": (8,)},
    "nft": {"injected": (1,), "flow_dropped": (4, 5), "flow_bypassed": (6, 7), "to_switch": (8,), "queued": (9,)},
}
_NFT_COUNTER = re.compile(r"\bcounter packets (\d+) bytes \d+")
_NFT_PROBE = ("table inet mirrorwatch_probe {\n  chain probe { type filter hook forward priority 0; "
              "policy accept; queue num 0 bypass; }\n}\n")


class FirewallError(RuntimeError):
    """A firewall command failed; the message is one actionable line."""


def parse_queue_spec(spec) -> tuple[int, int]:
    """``3``, ``"3"``, ``"0:3"`` or ``(0, 3)`` -> (first, last) queue numbers."""
    if isinstance(spec, int):
        first = last = spec
    elif isinstance(spec, str):
        first_s, _, last_s = spec.partition(":")
        try:
            first, last = int(first_s), int(last_s or first_s)
        except ValueError:
            raise ValueError(f"bad queue spec {spec!r}: expected N or A:B") from None
    else:
        first, last = spec
    if not 0 <= first <= last <= 0xFFFF:
        raise ValueError(f"bad queue spec {spec!r}: queue numbers 0..65535, first <= last")
    return first, last


def flow_drop_mark(mark: int, drop_bit: int = MARK_FLOW_DROP) -> int:
    """The mark to give with an NF_REPEAT verdict so that the kernel drops the flow from now on."""
    return mark | drop_bit


def flow_bypass_mark(mark: int, bypass_bit: int = MARK_FLOW_BYPASS) -> int:
    """The mark to give with an NF_REPEAT verdict so that the kernel passes the flow without queueing it."""
    return mark | bypass_bit


# -- iptables rules (pure) -----------------------------------------------------------
def _hexmask(value: int) -> str:
    return f"{value:#x}"


def _bit(value: int) -> str:
    return f"{_hexmask(value)}/{_hexmask(value)}"


def iptables_rules(queue: tuple[int, int], drop_bit: int, bypass_bit: int, chain: str = CHAIN, *,
                   injected_bit: int = MARK_INJECTED, queue_bypass: bool = True) -> list[list[str]]:
    """The rule specs of the own chain, in order (without ``-A CHAIN``)."""
    both = _hexmask(drop_bit | bypass_bit)
    drop, bypass = _bit(drop_bit), _bit(bypass_bit)
    first, last = queue
    target = ["--queue-num", str(first)] if first == last else ["--queue-balance", f"{first}:{last}"]
    return [
        ["-m", "mark", "--mark", _bit(injected_bit), "-j", "ACCEPT"],
        ["-m", "mark", "!", "--mark", f"0x0/{both}", "-j", "CONNMARK", "--save-mark", "--nfmask", both,
         "--ctmask", both],
        ["-m", "connmark", "--mark", drop, "-j", "DROP"],
        ["-m", "mark", "--mark", drop, "-j", "DROP"],
        ["-m", "connmark", "--mark", bypass, "-j", "ACCEPT"],
        ["-m", "mark", "--mark", bypass, "-j", "ACCEPT"],
        ["-j", f"{chain}-BYPASS"],
        ["-j", "NFQUEUE", *target, *(["--queue-bypass"] if queue_bypass else [])],
    ]


def iptables_commands(binary: str, hook_chain: str, queue: tuple[int, int], drop_bit: int,
                      bypass_bit: int, chain: str = CHAIN, **options) -> list[list[str]]:
    """Every command that installs the chains for one family; the jump from the hook comes last
    (``options``: ``iptables_rules``' keywords)."""
    rules = iptables_rules(queue, drop_bit, bypass_bit, chain, **options)
    cmds = [[binary, "-w", "-N", chain], [binary, "-w", "-N", f"{chain}-BYPASS"]]
    cmds += [[binary, "-w", "-A", chain, *rule] for rule in rules]
    cmds.append([binary, "-w", "-I", hook_chain, "1", "-j", chain])
    return cmds


# -- nft ruleset (pure) --------------------------------------------------------------
def nft_ruleset(hook: str, queue: tuple[int, int], families, drop_bit: int, bypass_bit: int,
                table: str = CHAIN.lower(), *, injected_bit: int = MARK_INJECTED, queue_bypass: bool = True) -> str:
    """The ``nft -f`` script that creates the firewall's own ``inet`` table (every rule counts)."""
    only = "" if set(families) == {4, 6} else f"meta nfproto {NFT_FAMILY[next(iter(families))]} "
    first, last = queue
    nums = str(first) if first == last else f"{first}-{last}"
    drop, byp, inj = _hexmask(drop_bit), _hexmask(bypass_bit), _hexmask(injected_bit)
    rules = (f"meta mark & {inj} == {inj} counter accept",
             f"meta mark & {drop} == {drop} counter ct mark set ct mark | {drop}",
             f"meta mark & {byp} == {byp} counter ct mark set ct mark | {byp}",
             f"ct mark & {drop} == {drop} counter drop",
             f"meta mark & {drop} == {drop} counter drop",
             f"ct mark & {byp} == {byp} counter accept",
             f"meta mark & {byp} == {byp} counter accept",
             "counter jump bypass",
             f"counter queue num {nums}" + (" bypass" if queue_bypass else ""))
    body = "".join(f"    {only}{rule}\n" for rule in rules)
    return (f"table inet {table} {{\n"
            f"  chain bypass {{\n  }}\n"
            f"  chain {hook} {{\n"
            f"    type filter hook {hook} priority 0; policy accept;\n"
            f"{body}"
            f"  }}\n"
            f"}}\n")


def parse_iptables_counters(text: str) -> list[int]:
    """Packets per rule, in chain order, from ``iptables -L CHAIN -v -x -n --line-numbers``."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            out.append(int(fields[1]))
    return out


def parse_nft_counters(text: str) -> list[int]:
    """Packets per counting rule, in chain order, from ``nft list chain``."""
    return [int(m.group(1)) for m in _NFT_COUNTER.finditer(text)]


# -- running commands ------------------------------------------------------------------
def _run(cmd: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except FileNotFoundError:
        pkg = "nftables" if cmd[0] == "nft" else "iptables"
        raise FirewallError(f"{cmd[0]} not found: install the {pkg} package (apt-get install {pkg})") from None
    except subprocess.TimeoutExpired:
        raise FirewallError(f"{shlex.join(cmd)} did not finish in {COMMAND_TIMEOUT:g}s") from None
    if check and r.returncode != 0:
        err = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise FirewallError(f"{shlex.join(cmd)} failed: {err[0] if err else f'exit {r.returncode}'}")
    return r


def _run_all(jobs: list[tuple[list[str], str]]) -> None:
    """Start every (command, stdin) at once (one per family), wait for all; raise on the first failure."""
    try:
        procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for cmd, _ in jobs]
    except FileNotFoundError as e:
        raise FirewallError(f"{e.filename} not found: install the iptables package (apt-get install iptables)") \
            from None
    try:
        errors = [p.communicate(stdin, timeout=COMMAND_TIMEOUT)[1] for p, (_, stdin) in zip(procs, jobs)]
    except subprocess.TimeoutExpired as e:
        for p in procs:
            p.kill()
            p.wait()
        raise FirewallError(f"{shlex.join(e.cmd)} did not finish in {COMMAND_TIMEOUT:g}s") from None
    for (cmd, _), p, err in zip(jobs, procs, errors):
        if p.returncode != 0:
            first = err.strip().splitlines()[0] if err.strip() else f"exit {p.returncode}"
            raise FirewallError(f"{shlex.join(cmd)} failed: {first}")


def nft_queue_supported() -> bool:
    """Does this kernel accept an nft ``queue`` rule (CONFIG_NFT_QUEUE)? Checked without committing."""
    if not shutil.which("nft"):
        return False
    return _run(["nft", "--check", "-f", "-"], stdin=_NFT_PROBE, check=False).returncode == 0


def choose_backend(backend: str = "auto") -> str:
    if backend != "auto":
        if backend not in BACKENDS:
            raise FirewallError(f"unknown firewall backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
        return backend
    if nft_queue_supported():
        return "nft"
    if shutil.which("iptables"):
        return "iptables"
    raise FirewallError("no usable firewall: nft has no queue support in this kernel (CONFIG_NFT_QUEUE) "
                        "and iptables is not installed (apt-get install iptables)")


class Firewall:
    """Installs, switches and removes the inline rules of one hook, for IPv4 and/or IPv6."""

    def __init__(self, queue_spec=0, hook: str = "forward", families=(4, 6), backend: str = "auto", *,
                 drop_bit: int = MARK_FLOW_DROP, bypass_bit: int = MARK_FLOW_BYPASS,
                 injected_bit: int = MARK_INJECTED, queue_bypass: bool = True, chain: str = CHAIN,
                 run_dir: str | os.PathLike = DEFAULT_RUN_DIR):
        if hook not in HOOK_CHAINS:
            raise ValueError(f"hook must be one of {', '.join(HOOK_CHAINS)}, got {hook!r}")
        self.families = tuple(sorted(set(families)))
        if not self.families or not set(self.families) <= {4, 6}:
            raise ValueError(f"families must be 4 and/or 6, got {families!r}")
        bits = (drop_bit, bypass_bit, injected_bit)
        if not all(bits) or drop_bit & bypass_bit or injected_bit & (drop_bit | bypass_bit) \
                or (drop_bit | bypass_bit | injected_bit) >> 32:
            raise ValueError("drop, bypass and injected mark bits must be distinct non-zero 32-bit masks")
        self.queue = parse_queue_spec(queue_spec)
        self.hook, self.chain = hook, chain
        self.drop_bit, self.bypass_bit, self.injected_bit = bits
        self.queue_bypass = queue_bypass
        self.run_dir = Path(run_dir)
        self._requested_backend = backend
        self._backend: str | None = None if backend == "auto" else choose_backend(backend)

    @property
    def backend(self) -> str:
        """The backend in use (``auto`` is resolved by probing on first use)."""
        if self._backend is None:
            self._backend = choose_backend(self._requested_backend)
        return self._backend

    # -- what would be run ---------------------------------------------------------
    def _binary(self, family: int) -> str:
        return IPTABLES_BINARIES[self.backend][family]

    def _nft_table(self) -> str:
        return self.chain.lower()

    def install_commands(self) -> list[tuple[list[str], str | None]]:
        """(command, stdin) pairs that install the rules."""
        options = {"injected_bit": self.injected_bit, "queue_bypass": self.queue_bypass}
        if self.backend == "nft":
            ruleset = nft_ruleset(self.hook, self.queue, self.families, self.drop_bit, self.bypass_bit,
                                  self._nft_table(), **options)
            return [(["nft", "-f", "-"], ruleset)]
        return [(cmd, None) for fam in self.families
                for cmd in iptables_commands(self._binary(fam), HOOK_CHAINS[self.hook], self.queue,
                                             self.drop_bit, self.bypass_bit, self.chain, **options)]

    def _bypass_jobs(self, on: bool) -> list[tuple[list[str], str]]:
        if self.backend == "nft":
            table = self._nft_table()
            script = f"flush chain inet {table} bypass\n" + (f"add rule inet {table} bypass accept\n" if on else "")
            return [(["nft", "-f", "-"], script)]
        switch = f"{self.chain}-BYPASS"
        script = f"*filter\n-F {switch}\n" + (f"-A {switch} -j ACCEPT\n" if on else "") + "COMMIT\n"
        return [([f"{self._binary(fam)}-restore", "-w", "--noflush"], script) for fam in self.families]

    def rules_text(self) -> str:
        """The exact shell commands ``install()`` runs, then how the bypass switch is turned (for --no-firewall)."""
        header = (f"# mirrorwatch inline firewall ({self.backend}, hook {self.hook}, "
                  f"queue {self.queue[0]}:{self.queue[1]}{'' if self.queue_bypass else ' fail-closed'}, "
                  f"drop mark {self.drop_bit:#x}, bypass mark {self.bypass_bit:#x}, "
                  f"injected mark {self.injected_bit:#x})")
        lines = [header]
        for cmd, stdin in self.install_commands():
            lines.append(f"{shlex.join(cmd)} <<'EOF'\n{stdin}EOF" if stdin else shlex.join(cmd))
        for on in (True, False):
            lines.append(f"# bypass {'on' if on else 'off'}:")
            lines += [f"{shlex.join(cmd)} <<'EOF'\n{stdin}EOF" for cmd, stdin in self._bypass_jobs(on)]
        return "\n".join(lines) + "\n"

    # -- doing it ----------------------------------------------------------------------
    def installed(self) -> bool:
        if self.backend == "nft":
            return _run(["nft", "list", "table", "inet", self._nft_table()], check=False).returncode == 0
        return any(_run([self._binary(fam), "-w", "-S", self.chain], check=False).returncode == 0
                   for fam in self.families)

    def install(self) -> None:
        """Install the rules (after removing leftovers of an earlier run) and record them in run_dir."""
        self.remove()
        try:
            for cmd, stdin in self.install_commands():
                _run(cmd, stdin=stdin)
        except FirewallError:
            self.remove()
            raise
        self.record()

    def remove(self) -> None:
        """Remove the jump and the chains (or the nft table); idempotent; forgets the state file."""
        if self.backend == "nft":
            _run(["nft", "delete", "table", "inet", self._nft_table()], check=False)
        else:
            for fam in self.families:
                self._remove_family(self._binary(fam))
        self.forget()

    def _remove_family(self, binary: str) -> None:
        hook_chain = HOOK_CHAINS[self.hook]
        while _run([binary, "-w", "-C", hook_chain, "-j", self.chain], check=False).returncode == 0:
            _run([binary, "-w", "-D", hook_chain, "-j", self.chain])
        for chain in (self.chain, f"{self.chain}-BYPASS"):
            if _run([binary, "-w", "-S", chain], check=False).returncode == 0:
                _run([binary, "-w", "-F", chain])
        for chain in (self.chain, f"{self.chain}-BYPASS"):
            if _run([binary, "-w", "-S", chain], check=False).returncode == 0:
                _run([binary, "-w", "-X", chain])

    def set_bypass(self, on: bool) -> None:
        """Turn the bypass switch on (accept everything not flow-dropped) or off; atomic per family."""
        _run_all(self._bypass_jobs(on))

    def bypass_on(self) -> bool:
        """Is the bypass switch on (for every family)?"""
        if self.backend == "nft":
            r = _run(["nft", "list", "chain", "inet", self._nft_table(), "bypass"], check=False)
            return r.returncode == 0 and "accept" in r.stdout
        switch = f"{self.chain}-BYPASS"
        rule = f"-A {switch} -j ACCEPT"
        return all(rule in _run([self._binary(fam), "-w", "-S", switch], check=False).stdout.splitlines()
                   for fam in self.families)

    def counters(self) -> dict[str, int]:
        """Packets each kind of rule took, both families together: ``queued`` (reached the queue
        rule: delivered, or accepted by fail-open / --queue-bypass), ``bypass_switch`` (accepted by
        the bypass switch), ``flow_dropped``, ``flow_bypassed``, ``injected``."""
        if self.backend == "nft":
            r = _run(["nft", "list", "chain", "inet", self._nft_table(), self.hook])
            per_rule = [parse_nft_counters(r.stdout)]
        else:
            per_rule = [parse_iptables_counters(_run([self._binary(fam), "-w", "-L", self.chain, "-v", "-x", "-n",
                                                      "--line-numbers"]).stdout) for fam in self.families]
        roles = COUNTER_RULES["nft" if self.backend == "nft" else "iptables"]
        out = {role: sum(rules[i - 1] for rules in per_rule for i in positions if i <= len(rules))
               for role, positions in roles.items()}
        out["bypass_switch"] = max(0, out.pop("to_switch") - out["queued"])
        return out

    # -- state shared with other processes -------------------------------------------------
    def config(self) -> dict:
        return {"queue": list(self.queue), "hook": self.hook, "families": list(self.families),
                "backend": self.backend, "drop_bit": self.drop_bit, "bypass_bit": self.bypass_bit,
                "injected_bit": self.injected_bit, "queue_bypass": self.queue_bypass, "chain": self.chain}

    def record(self) -> None:
        """Write the configuration to run_dir (``install`` does; alone when the operator installs the rules)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(self.config()) + "\n")
        tmp.replace(self.run_dir / STATE_FILE)

    def forget(self) -> None:
        """Remove the recorded configuration (``remove`` does)."""
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    @classmethod
    def from_config(cls, config: dict, run_dir: str | os.PathLike = DEFAULT_RUN_DIR) -> Firewall:
        return cls(tuple(config["queue"]), config["hook"], tuple(config["families"]), config["backend"],
                   drop_bit=config["drop_bit"], bypass_bit=config["bypass_bit"],
                   injected_bit=config["injected_bit"], queue_bypass=config["queue_bypass"], chain=config["chain"],
                   run_dir=run_dir)

    @classmethod
    def from_state(cls, run_dir: str | os.PathLike = DEFAULT_RUN_DIR) -> Firewall:
        """The firewall a running (or killed) inline mirrorwatch installed, from run_dir/firewall.json."""
        path = Path(run_dir) / STATE_FILE
        try:
            return cls.from_config(json.loads(path.read_text()), run_dir)
        except FileNotFoundError:
            raise FirewallError(f"no inline firewall recorded in {path}: is mirrorwatch running inline?") from None
        except (ValueError, KeyError, TypeError) as e:
            raise FirewallError(f"unreadable firewall state {path}: {e}") from None

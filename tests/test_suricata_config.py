"""``-c suricata.yaml`` and ``--set`` the Suricata way, with a stock configuration's layout (tests/data)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from slowcap import PING_SID, write_ping_sweep

from mirrorwatch.cli.config import ConfigError, describe_unused, read_config
from mirrorwatch.core.settings import SETTINGS_BY_KEY, Settings

ROOT = Path(__file__).resolve().parent.parent
STOCK = Path(__file__).resolve().parent / "data" / "suricata.yaml.in"
PING_RULE = ('alert icmp $EXTERNAL_NET any -> $HOME_NET any (msg:"MW ping in"; itype:8; dsize:0; '
             f'classtype:attempted-recon; sid:{PING_SID}; rev:1;)\n')


def mirrorwatch(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mirrorwatch", *args], capture_output=True, text=True, check=False,
                          timeout=120, cwd=cwd)


@pytest.fixture
def site(tmp_path):
    """A Suricata installation's layout: the stock suricata.yaml with its paths filled in, rules, logs."""
    for d in ("log", "rules", "etc"):
        (tmp_path / d).mkdir()
    (tmp_path / "rules" / "suricata.rules").write_text(PING_RULE)
    (tmp_path / "etc" / "classification.config").write_text(
        "config classification: attempted-recon,Attempted Information Leak,2\n")
    text = (STOCK.read_text().replace("@e_logdir@", f"{tmp_path}/log/")
            .replace("@e_defaultruledir@", f"{tmp_path}/rules").replace("@e_sysconfdir@", f"{tmp_path}/etc/"))
    (tmp_path / "suricata.yaml").write_text(text)
    write_ping_sweep(tmp_path / "pings.pcap", count=5, interval=0.01)
    return tmp_path


def expand(text: str) -> list[str]:
    """The warning's list, braces expanded: ``a.{b,c}, d`` -> a.b, a.c, d."""
    names = []
    for part in re.findall(r"[^,{}\s]+(?:\{[^}]*\})?", text):
        head, _, rest = part.partition("{")
        names.extend([head + leaf for leaf in rest.rstrip("}").split(",")] if rest else [head])
    return names


def eve(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_stock_configuration_drives_a_replay_with_one_warning_line(site):
    r = mirrorwatch("replay", "-q", "-c", str(site / "suricata.yaml"), str(site / "pings.pcap"))
    assert r.returncode == 0, r.stderr
    warnings = [x for x in r.stderr.splitlines() if x.startswith("mirrorwatch: warning:")]
    assert len(warnings) == 1 and "not used by mirrorwatch" in warnings[0], r.stderr
    names = expand(warnings[0].split("not used by mirrorwatch: ", 1)[1])
    assert len(names) == len(set(names)), "each unused key is named once"
    assert {"af-packet", "logging", "host-mode", "threading", "outputs.stats",
            "outputs.eve-log.types.alert.tagged-packets", "flow-timeouts.tcp.bypassed"} <= set(names)
    assert not set(names) & set(SETTINGS_BY_KEY), "no key mirrorwatch uses is named"
    for used in ("vars", "default-rule-path", "rule-files", "classification-file", "suricata-version",
                 "outputs.http-log", "decoder"):  # taken whole (or switched off)
        assert not any(n == used or n.startswith(used + ".") for n in names), used
    assert not {"outputs.eve-log.types.alert", "outputs.eve-log.types.flow", "outputs.eve-log"} & set(names)
    # the outputs of the file, under default-log-dir; the rules of rule-files with their classification
    records = eve(site / "log" / "eve.json")
    alerts = [e for e in records if e["event_type"] == "alert"]
    assert len(alerts) == 5 and alerts[0]["alert"]["category"] == "Attempted Information Leak"
    assert {e["event_type"] for e in records} == {"alert", "flow", "stats"}  # the file's types: no kill
    assert (site / "log" / "fast.log").read_text().count("MW ping in") == 5


def test_settings_take_the_files_values_under_suricatas_names(site):
    text = (site / "suricata.yaml").read_text()
    text = text.replace("depth: 1mb", "depth: 64kb").replace("    established: 600", "    established: 900")
    text = text.replace("memcap: 32mb\n  hash-size", "memcap: 1gb\n  hash-size")
    text = text.replace("    ports: $VXLAN_PORTS", "    ports: [4789, 8472]").replace(
        "  geneve:\n    enabled: true", "  geneve:\n    enabled: false")
    text += "packet-alert-max: 3\nsensor-name: edge-7\n"
    (site / "suricata.yaml").write_text(text)
    s = Settings()
    run = read_config(site / "suricata.yaml", s)
    assert s["stream.reassembly.depth"] == 64 * 1024 and s["flow-timeouts.tcp.established"] == 900
    assert s["defrag.memcap"] == 1024**3 and s["detect.packet-alert-max"] == 3
    assert s["decoder.vxlan.ports"] == "4789,8472" and s["decoder.geneve.ports"] == ""
    assert s["decoder.teredo.ports"] == "3544"  # $TEREDO_PORTS from the port groups
    assert s["capture.stats-interval"] == 8 and s["stream.inline"] is False  # inline: auto keeps the default
    assert s.port_groups["ORACLE_PORTS"] == "1521" and s.address_groups["EXTERNAL_NET"] == "!$HOME_NET"
    assert run.sensor_name == "edge-7" and run.rule_paths == [f"{site}/rules/suricata.rules"]


def test_address_groups_of_the_file_decide_what_alerts(site):
    cfg = site / "suricata.yaml"
    cfg.write_text(cfg.read_text().replace('HOME_NET: "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]"',
                                           'HOME_NET: "[10.0.0.0/8]"'))
    r = mirrorwatch("replay", "-q", "-c", str(cfg), str(site / "pings.pcap"))
    assert r.returncode == 0, r.stderr
    assert not [e for e in eve(site / "log" / "eve.json") if e["event_type"] == "alert"]
    # the command line wins over the file
    r = mirrorwatch("replay", "-q", "-c", str(cfg), "--set", "vars.address-groups.HOME_NET=[192.168.0.0/16]",
                    "--eve", str(site / "cli.json"), "--eve-types", "alert", "--sensor-name", "cli-name",
                    str(site / "pings.pcap"))
    assert r.returncode == 0, r.stderr
    records = eve(site / "cli.json")
    assert len(records) == 5 and all(e["event_type"] == "alert" and e["host"] == "cli-name" for e in records)


def test_includes_and_the_include_tag(site):
    (site / "extra.yaml").write_text("%YAML 1.1\n---\nstream:\n  reassembly:\n    depth: 2mb\nsensor-name: from-include\n")
    (site / "groups.yaml").write_text("%YAML 1.1\n---\nHOME_NET: \"[10.1.0.0/16]\"\nEXTERNAL_NET: any\n")
    cfg = site / "suricata.yaml"
    text = cfg.read_text().replace("vars:\n  address-groups:\n", "vars:\n  address-groups: !include groups.yaml\n"
                                   "  unused-groups:\n", 1)
    cfg.write_text(text + "include:\n  - extra.yaml\n")
    s = Settings()
    run = read_config(cfg, s)
    assert s["stream.reassembly.depth"] == 2 * 1024 * 1024 and run.sensor_name == "from-include"
    assert s.address_groups["HOME_NET"] == "[10.1.0.0/16]" and s.address_groups["EXTERNAL_NET"] == "any"
    # keys after an include win over it, as in Suricata
    cfg.write_text("%YAML 1.1\n---\ninclude: extra.yaml\nstream:\n  reassembly:\n    depth: 4mb\n")
    s = Settings()
    read_config(cfg, s)
    assert s["stream.reassembly.depth"] == 4 * 1024 * 1024
    cfg.write_text("%YAML 1.1\n---\ninclude: suricata.yaml\n")
    with pytest.raises(ConfigError, match="includes nested more than"):
        read_config(cfg, Settings())


def test_unusable_configuration_files_are_one_line_errors(site):
    bad = site / "bad.yaml"
    for text, why in (("%YAML 1.1\n---\nstream: [unclosed\n", "bad.yaml:4: not valid YAML"),
                      ("%YAML 1.1\n---\n- a list\n", "expected a mapping"),
                      ("%YAML 1.1\n---\nstream:\n  reassembly:\n    depth: lots\n", "stream.reassembly.depth: not a size")):
        bad.write_text(text)
        r = mirrorwatch("replay", "-q", "-c", str(bad), str(site / "pings.pcap"))
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and why in r.stderr, r.stderr
    r = mirrorwatch("rules", "check", "-c", str(site / "missing.yaml"))
    assert r.returncode == 1 and "missing.yaml: cannot read" in r.stderr


def test_set_suricata_keys_are_noted_and_misspellings_get_the_closest_name(site):
    pcap = str(site / "pings.pcap")
    r = mirrorwatch("replay", "-q", "--set", "stream.memcap=64mb", "--set", "app-layer.protocols.tls.enabled=no",
                    "--set", "packet-alert-max=3", "--set", "sensor-name=setname", "--eve", str(site / "e.json"), pcap)
    assert r.returncode == 0, r.stderr
    notes = r.stderr.splitlines()
    lines = [f"mirrorwatch: note: --set {k}: a Suricata setting mirrorwatch does not implement, ignored"
             for k in ("stream.memcap", "app-layer.protocols.tls.enabled")]
    assert notes == lines
    assert all(e["host"] == "setname" for e in eve(site / "e.json"))
    r = mirrorwatch("replay", "-q", "--set", "stream.reassembly.dept=1mb", pcap)
    assert r.returncode == 2
    assert r.stderr == ("mirrorwatch: error: --set: unknown setting 'stream.reassembly.dept'; did you mean "
                        "'stream.reassembly.depth'? (see 'mirrorwatch settings' for the list)\n")
    r = mirrorwatch("replay", "-q", "--set", "flow-timeouts.tcp.establised=5", pcap)
    assert r.returncode == 2 and "did you mean 'flow-timeouts.tcp.established'?" in r.stderr


def test_rules_check_reads_the_rule_files_of_the_configuration(site):
    r = mirrorwatch("rules", "check", "-c", str(site / "suricata.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 file(s), 1 rule(s): 1 loaded")
    r = mirrorwatch("rules", "check")
    assert r.returncode == 2 and "no rule file given" in r.stderr


def test_redis_eve_log_of_the_configuration(site, redis_server):
    cfg = site / "suricata.yaml"
    text = cfg.read_text().replace("      filetype: regular\n      filename: eve.json\n", (
        "      filetype: redis\n      redis:\n        server: 127.0.0.1\n"
        f"        port: {redis_server.port}\n        async: true\n        mode: stream\n        key: sensors\n"
        "        stream-maxlen: 1000\n        pipelining:\n          enabled: yes\n          batch-size: 10\n"))
    cfg.write_text(text)
    r = mirrorwatch("replay", "-q", "-c", str(cfg), "--sensor-name", "edge-1", str(site / "pings.pcap"))
    assert r.returncode == 0, r.stderr
    assert "outputs.eve-log.redis.async" in r.stderr  # read, not followed: named
    entries = [json.loads(f["eve"]) for _, f in redis_server.client().xrange("sensors")]
    assert sum(e["event_type"] == "alert" for e in entries) == 5 and all(e["host"] == "edge-1" for e in entries)


def test_unused_keys_read_as_one_list():
    assert describe_unused(["stream.memcap", "stream.bypass", "logging", "flow.hash-size"]) == (
        "stream.{memcap,bypass}, logging, flow.hash-size")


def test_eve_types_dns_version_and_files_are_taken(tmp_path):
    cfg = tmp_path / "suricata.yaml"
    cfg.write_text("%YAML 1.1\n---\noutputs:\n  - eve-log:\n      enabled: yes\n      filename: eve.json\n"
                   "      types:\n        - alert\n        - dns:\n            version: 3\n        - files\n")
    s = Settings()
    assert s["eve-log.dns.version"] == "2"  # mirrorwatch's default: the query/answer records
    run = read_config(cfg, s)
    assert s["eve-log.dns.version"] == "3"
    assert run.eve[0].types == ("alert", "dns", "fileinfo")  # Suricata's "files" is the fileinfo record
    cfg.write_text(cfg.read_text().replace("version: 3", "version: 4"))
    with pytest.raises(ConfigError, match="eve-log.dns.version: 4 is not one of 2, 3"):
        read_config(cfg, Settings())


@pytest.mark.parametrize(("version", "dns_types", "expected"), [
    ('"8.0"', "        - dns\n", "3"),  # a Suricata 8 configuration: Suricata 8's v3 records
    ('"8.0"', "        - dns:\n            version: 2\n", "2"),  # unless it asks for v2 itself
    ('"7.0"', "        - dns\n", "2"),
    ("", "        - dns\n", "2"),  # no suricata-version: mirrorwatch's default
])
def test_a_suricata_8_configuration_gets_suricata_8s_dns_records(tmp_path, version, dns_types, expected):
    cfg = tmp_path / "suricata.yaml"
    head = f"suricata-version: {version}\n" if version else ""
    cfg.write_text(f"%YAML 1.1\n---\n{head}outputs:\n  - eve-log:\n      enabled: yes\n      types:\n{dns_types}")
    s = Settings()
    read_config(cfg, s)
    assert s["eve-log.dns.version"] == expected
    s.apply("eve-log.dns.version=2")  # --set comes after the file, and wins
    assert s["eve-log.dns.version"] == "2"


def test_eve_log_ipv6_compress_is_taken_per_output(tmp_path):
    cfg = tmp_path / "suricata.yaml"
    cfg.write_text("%YAML 1.1\n---\noutputs:\n  - eve-log:\n      enabled: yes\n      filename: eve.json\n"
                   "      ipv6-compress: yes\n      types:\n        - flow\n"
                   "  - eve-log:\n      enabled: yes\n      filename: full.json\n      types:\n        - flow\n")
    s = Settings()
    run = read_config(cfg, s)
    assert s["eve-log.ipv6-compress"] is False  # Suricata's default: IPv6 in full
    assert [e.ipv6_compress for e in run.eve] == [True, None]  # the second output takes the setting
    cfg.write_text(cfg.read_text().replace("ipv6-compress: yes", "ipv6-compress: maybe"))
    with pytest.raises(ConfigError, match=r"outputs\[0\]\.eve-log\.ipv6-compress: not a boolean|ipv6-compress: not a"):
        read_config(cfg, Settings())


def test_two_eve_outputs_of_a_configuration_write_ipv6_each_their_way(tmp_path):
    """Suricata sets ipv6-compress per eve-log output; --set of the key wins over both."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    pcap = tmp_path / "v6.pcap"
    wrpcap(str(pcap), [Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1234, dport=80, flags="S")])
    (tmp_path / "empty.rules").write_text("")
    cfg = tmp_path / "suricata.yaml"
    cfg.write_text(f"%YAML 1.1\n---\ndefault-log-dir: {tmp_path}\noutputs:\n"
                   "  - eve-log:\n      enabled: yes\n      filename: short.json\n      ipv6-compress: yes\n"
                   "      types:\n        - flow\n"
                   "  - eve-log:\n      enabled: yes\n      filename: full.json\n      types:\n        - flow\n")
    base = ("replay", "-q", "-c", str(cfg), "-r", str(tmp_path / "empty.rules"), "--no-table", str(pcap))
    r = mirrorwatch(*base)
    assert r.returncode == 0, r.stderr
    assert eve(tmp_path / "short.json")[0]["src_ip"] == "2001:db8::1"
    assert eve(tmp_path / "full.json")[0]["src_ip"] == "2001:0db8:0000:0000:0000:0000:0000:0001"
    for name in ("short.json", "full.json"):  # EVE files are appended to, as Suricata's
        (tmp_path / name).unlink()
    r = mirrorwatch(*base[:2], "--set", "eve-log.ipv6-compress=no", *base[2:])
    assert r.returncode == 0, r.stderr
    assert eve(tmp_path / "short.json")[0]["src_ip"] == eve(tmp_path / "full.json")[0]["src_ip"] \
        == "2001:0db8:0000:0000:0000:0000:0000:0001"

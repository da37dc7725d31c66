"""The inline sensor's accounts: the firewall's rule counters, read in a thread, and what passed uninspected.

The firewall's counters tell how many packets reached the queue rule and how
many the bypass switch accepted; with the queues' own counts that gives the
packets that passed uninspected (``accounting``).
"""

from __future__ import annotations

import threading

from mirrorwatch.inline.firewall import Firewall, FirewallError

COUNTER_INTERVAL = 1.0  # s between two reads of the firewall's rule counters (in a thread)
FINAL_COUNTER_ATTEMPTS = 3  # reads of the counters at a clean stop (iptables-nft refuses a listing mid-change)


class CounterReader(threading.Thread):
    """Reads the firewall's rule counters every ``interval`` s (iptables takes tens of ms)."""

    def __init__(self, firewall: Firewall, interval: float = COUNTER_INTERVAL):
        super().__init__(name="firewall-counters", daemon=True)
        self.firewall, self.interval = firewall, interval
        self.latest: dict[str, int] = {}
        self.error = ""
        self._stop_event = threading.Event()

    def read(self, attempts: int = 1) -> dict[str, int]:
        for _ in range(attempts):
            try:
                self.latest = self.firewall.counters()
            except FirewallError as e:
                self.error = str(e)
            else:
                self.error = ""
                break
        return self.latest

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.read()

    def stop(self) -> None:
        self._stop_event.set()


def accounting(k: dict, fw: dict, released: int, verdicts: dict) -> dict:
    """The queue figures ``k`` (own and the kernel's, every queue summed) and the firewall's ``fw`` (rule
    counters, {} when unread), and what passed uninspected: fail-open, ``released`` by the watchdog, bypass."""
    drops = k["queue_dropped"] + k["queue_user_dropped"]
    queued = fw.get("queued", 0)
    unqueued = max(0, queued - k["received"] - k["queue_total"] - drops) if fw else 0
    bypass = fw.get("bypass_switch", 0)
    return dict(k, drops=drops, queue_drops=k["queue_dropped"], kernel_drops=k["queue_user_dropped"],
                fw_queued=queued, uninspected_fail_open=unqueued, uninspected_released=released,
                uninspected_bypass_switch=bypass, uninspected=unqueued + released + bypass,
                flow_bypassed_packets=fw.get("flow_bypassed", 0), flow_dropped_packets=fw.get("flow_dropped", 0),
                injected_packets=fw.get("injected", 0), verdicts=verdicts)

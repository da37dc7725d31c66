"""EVE into a real Redis (tests/redislab.py): every record arrives, in Suricata's shapes, across restarts.

Each replay writes the same records to a file and to Redis (``--eve`` twice);
the file is the reference every Redis element is compared with.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from redislab import free_port
from slowcap import PING_SID, write_ping_sweep

from mirrorwatch.sinks.redis import RedisOutput, RedisURLError, parse_redis_url

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
FAST = ["--set", "eve-log.redis.reconnect-interval=0.2"]
UPTIME = re.compile(r'"uptime":\d+')


def mirrorwatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mirrorwatch", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, cwd=ROOT)


def comparable(records: list[str]) -> list[str]:
    """Records as both outputs write them: the stats' uptime is each writer's own clock."""
    return [UPTIME.sub('"uptime":0', r) for r in records]


def stored(client, key: str, mode: str) -> list[str]:
    """What the key holds, oldest first."""
    if mode == "stream":
        entries = client.xrange(key)
        assert all(list(fields) == ["eve"] for _, fields in entries), "one field named eve, as Suricata's"
        return [fields["eve"] for _, fields in entries]
    items = client.lrange(key, 0, -1)
    return items[::-1] if mode == "list" else items  # list = LPUSH: newest first


def file_records(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_url_forms_and_one_line_errors():
    t = parse_redis_url("redis://10.0.0.5")
    assert (t.host, t.port, t.key, t.mode, t.command) == ("10.0.0.5", 6379, "suricata", "list", "LPUSH")
    t = parse_redis_url("redis://u:pw@h:7000/eve?mode=stream&stream-maxlen=500&stream-trim-exact=yes&batch-size=8")
    assert (t.username, t.password, t.port, t.key, t.command) == ("u", "pw", 7000, "eve", "XADD")
    assert (t.stream_maxlen, t.stream_trim_exact, t.batch_size) == (500, True, 8)
    assert "pw" not in t.url()
    for mode, cmd in (("rpush", "RPUSH"), ("lpush", "LPUSH"), ("channel", "PUBLISH"), ("publish", "PUBLISH"),
                      ("xadd", "XADD")):
        assert parse_redis_url(f"redis://h/k?mode={mode}").command == cmd
    for bad, why in (("redis://h/k?mode=queue", "unknown mode"), ("redis://h/k?mod=list", "unknown parameter"),
                     ("redis://h:port/k", "redis://h:port/k"), ("redis://h/k?stream-maxlen=-1", "whole number"),
                     ("http://h/k", "expected redis://")):
        with pytest.raises(RedisURLError, match=why):
            parse_redis_url(bad)


@pytest.mark.parametrize("mode", ["list", "rpush", "stream"])
def test_every_record_of_a_replay_arrives(redis_server, tmp_path, mode):
    eve = tmp_path / "eve.json"
    r = mirrorwatch("replay", "-q", "--eve", str(eve), "--eve", redis_server.url("mw", mode),
                    "--sensor-name", "sensor-a", str(DEMO))
    assert r.returncode == 0, r.stderr
    want = comparable(file_records(eve))
    got = comparable(stored(redis_server.client(), "mw", mode))
    assert got == want  # every record, once, in order (a single writer: batches keep the order)
    kinds = Counter(json.loads(x)["event_type"] for x in got)
    assert kinds["alert"] >= 19 and kinds["flow"] >= 25 and kinds["stats"] == 1
    assert all(json.loads(x)["host"] == "sensor-a" for x in got)
    assert "warning" not in r.stderr


def test_channel_subscriber_gets_every_record(redis_server, tmp_path):
    eve = tmp_path / "eve.json"
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("mw")
    r = mirrorwatch("replay", "-q", "--eve", str(eve), "--eve", redis_server.url("mw", "channel"), str(DEMO))
    assert r.returncode == 0, r.stderr
    want = comparable(file_records(eve))
    got = []
    deadline = time.monotonic() + 10
    while len(got) < len(want) and time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.2)
        if m is not None:
            got.append(m["data"])
    assert comparable(got) == want
    assert "published to no subscriber" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["list", "stream"])
def test_records_survive_a_redis_restart_in_the_middle_of_a_replay(redis_server, tmp_path, mode):
    pcap = write_ping_sweep(tmp_path / "pings.pcap", count=60, interval=0.08)  # ~4.8 s at recorded pace
    eve = tmp_path / "eve.json"
    p = subprocess.Popen([sys.executable, "-m", "mirrorwatch", "replay", "-q", "--realtime", "--eve", str(eve),
                          "--eve", redis_server.url("mw", mode), *FAST, str(pcap)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1.5)
    assert p.poll() is None, "the replay must still be running when Redis goes away"
    redis_server.restart(down=1.0)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    want = comparable(file_records(eve))
    got = Counter(comparable(stored(redis_server.client(), "mw", mode)))
    assert set(got) == set(want)  # every alert and flow record arrived
    assert sum(got.values()) - len(want) <= 256, "at most the one batch in flight at the restart again"
    records = [json.loads(x) for x in want]
    assert sum(e["event_type"] == "alert" and e["alert"]["signature_id"] == PING_SID for e in records) == 60
    assert sum(e["event_type"] == "flow" for e in records) == 60
    stats = [e for e in records if e["event_type"] == "stats"][-1]["stats"]
    assert stats["eve"]["redis"]["reconnects"] >= 1, "the outage was seen by the sender"
    assert stats["eve"]["redis"]["dropped"] == 0 and "warning" not in err


def test_channel_records_written_while_redis_is_down_are_published_after_it_returns(redis_server):
    out = RedisOutput(parse_redis_url(redis_server.url("mw", "channel")), reconnect_interval=30.0)
    out.write('{"n":0}\n')
    out.flush()
    time.sleep(0.3)  # delivered while up
    redis_server.stop()
    for n in range(1, 500):
        out.write(f'{{"n":{n}}}\n')
    out.flush()
    deadline = time.monotonic() + 5
    while out.first_error is None and time.monotonic() < deadline:  # the sender found the server gone
        time.sleep(0.05)
    assert out.first_error is not None and out.counters()["buffered"] == 499
    redis_server.start()
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("mw")
    out.flush()  # try again now, not after the 30 s reconnect interval
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 499 and time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.2)
        if m is not None:
            got.append(json.loads(m["data"])["n"])
    out.close()
    assert got == list(range(1, 500))
    assert out.counters() | {"buffered": 0} == {"sent": 500, "buffered": 0, "dropped": 0, "refused": 0,
                                                 "lost": 0, "unheard": 1, "reconnects": 1}


def test_undeliverable_records_are_counted_and_said_once():
    dead = f"redis://127.0.0.1:{free_port()}/mw?mode=list"
    out = RedisOutput(parse_redis_url(dead), batch_size=4, buffer_size=10, drain_timeout=0.0)
    for n in range(100):
        out.write(f'{{"n":{n}}}\n')
    out.close()
    c = out.counters()
    assert c["sent"] == 0 and c["dropped"] + c["lost"] == 100 and c["dropped"] >= 86
    line = out.warning()
    assert line.startswith(f"EVE to {dead}: 100 of 100 records not delivered: ")
    assert "dropped from the full buffer" in line and "Connection refused" in line and "\n" not in line


def test_replay_to_an_unreachable_redis_warns_once_and_fails(tmp_path):
    eve = tmp_path / "eve.json"
    r = mirrorwatch("replay", "-q", "--eve", str(eve), "--eve", f"redis://127.0.0.1:{free_port()}/mw",
                    "--set", "eve-log.redis.drain-timeout=0.5", str(DEMO))
    assert r.returncode == 1 and eve.exists(), r.stderr
    warnings = [x for x in r.stderr.splitlines() if "warning" in x]
    n = len(file_records(eve))
    assert len(warnings) == 1 and f"{n} of {n} records not delivered" in warnings[0], r.stderr
    stats = json.loads(file_records(eve)[-1])["stats"]
    assert stats["eve"]["redis"]["sent"] == 0


def test_records_the_server_refuses_are_counted(redis_server):
    redis_server.client().set("mw", "not a list")
    out = RedisOutput(parse_redis_url(redis_server.url("mw", "rpush")))
    for n in range(3):
        out.write(f'{{"n":{n}}}\n')
    out.close()
    assert out.counters()["refused"] == 3 and out.undelivered() == 3
    assert "refused by the server" in out.warning() and "WRONGTYPE" in out.warning()


def test_stream_is_trimmed_to_its_max_length(redis_server):
    out = RedisOutput(parse_redis_url(redis_server.url("mw", "stream", **{"stream-maxlen": "10",
                                                                          "stream-trim-exact": "yes"})))
    for n in range(50):
        out.write(f'{{"n":{n}}}\n')
    out.close()
    kept = [json.loads(x)["n"] for x in stored(redis_server.client(), "mw", "stream")]
    assert kept == list(range(40, 50)) and out.counters()["sent"] == 50


def test_writer_never_waits_for_a_slow_server(redis_server):
    """The engine's side only appends: a server that stops answering costs it nothing."""
    redis_server.proc.send_signal(__import__("signal").SIGSTOP)
    try:
        out = RedisOutput(parse_redis_url(redis_server.url("mw", "list")), timeout=0.5, drain_timeout=0.0)
        t = time.perf_counter()
        for n in range(20_000):
            out.write(f'{{"n":{n}}}\n')
        assert time.perf_counter() - t < 1.0
    finally:
        redis_server.proc.send_signal(__import__("signal").SIGCONT)
    out.close()
    assert out.undelivered() + out.sent == 20_000


def test_two_writers_share_the_sender_thread_safely(redis_server):
    """Writes from the engine's thread while the sender drains: nothing lost or doubled."""
    out = RedisOutput(parse_redis_url(redis_server.url("mw", "rpush")), batch_size=7)
    stop = threading.Event()

    def flusher():
        while not stop.is_set():
            out.flush()
            time.sleep(0.001)

    t = threading.Thread(target=flusher)
    t.start()
    for n in range(5000):
        out.write(f"{n}\n")
    stop.set()
    t.join()
    out.close()
    assert [int(x) for x in redis_server.client().lrange("mw", 0, -1)] == list(range(5000))


def test_each_eve_output_takes_its_own_types(redis_server, tmp_path):
    pcap = write_ping_sweep(tmp_path / "pings.pcap", count=4, interval=0.01)
    eve = tmp_path / "eve.json"
    r = mirrorwatch("replay", "-q", "--eve", str(eve), "--eve-types", "flow,stats",
                    "--eve", redis_server.url("mw", "rpush"), "--eve-types", "alert", str(pcap))
    assert r.returncode == 0, r.stderr
    assert Counter(json.loads(x)["event_type"] for x in file_records(eve)) == {"flow": 4, "stats": 1}
    assert Counter(json.loads(x)["event_type"] for x in stored(redis_server.client(), "mw", "rpush")) == {"alert": 4}
    r = mirrorwatch("replay", "-q", "--eve", str(eve), "--eve", redis_server.url("mw", "rpush"),
                    "--eve-types", "alert", "--eve-types", "flow", "--eve-types", "stats", str(pcap))
    assert r.returncode == 2 and "--eve-types given 3 times for 2 EVE output(s)" in r.stderr

#!/usr/bin/env python3
"""Records real Sentinel and data-node replies, byte for byte, for parser tests.

A one-off research tool, kept so the fixtures can be made again: it starts
1 master + 2 replicas + 3 Sentinels (and one password-protected pair) on
192.0.2.0/24 addresses on the loopback of a network namespace of its own,
asks them what the sentinel-vip parsers read, in RESP2 and RESP3, runs real
failovers (SENTINEL FAILOVER, kill -9, aborted ones) while subscribed to the
Sentinels' events and polling ROLE, and writes each reply's exact bytes to
OUT/<server>-<version>/<name>.resp2|.resp3, plus the failover timings to
failovers.json. Root only; it holds the lab lock (/tmp/sentinel-vip-heavy.lock)
and removes its namespace and processes however it ends.

  scripts/record-replies.py redis
  scripts/record-replies.py valkey --bin /var/cache/sentinel-vip-lab/roots/<trixie root>/bin
"""

import argparse
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

NAME = "mymaster"
AUTH_NAME = "authmaster"
PASSWORD = "lab-secret"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
NODES = [1, 2, 3]
AUTH_NODE = 4
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
LOCK = "/tmp/sentinel-vip-heavy.lock"

# Every channel sentinel.c publishes (Redis 7.0 and Valkey 8 alike).
CHANNELS = """+config-update-from +convert-to-slave +elected-leader +failover-end
+failover-end-for-timeout +failover-state-reconf-slaves +failover-state-select-slave
+failover-state-send-slaveof-noone +failover-state-wait-promotion +fix-slave-config
+monitor +new-epoch +odown +promoted-slave +reboot +reset-master +sdown +selected-slave
+sentinel +sentinel-address-switch +sentinel-address-update +slave +slave-reconf-done
+slave-reconf-inprog +slave-reconf-sent +switch-master +tilt +try-failover
+vote-for-leader -failover-abort-no-good-slave -failover-abort-not-elected
-failover-abort-slave-timeout -odown -sdown -slave-reconf-sent-timeout -tilt
-monitor""".split()


def ip(n):
    return f"192.0.2.{10 + n}"


def node_of(addr):
    for n in NODES + [AUTH_NODE]:
        if ip(n) == addr:
            return n
    return None


def now():
    return time.monotonic()


# ----- RESP ------------------------------------------------------------------


class Incomplete(Exception):
    pass


class Err(str):
    """An error reply (RESP2 `-`, RESP3 `-` or `!`)."""


def parse(buf, i=0):
    """One reply from buf[i:]: (value, next index). Raises Incomplete."""
    nl = buf.find(b"\r\n", i)
    if nl < 0:
        raise Incomplete
    t, line, j = buf[i : i + 1], buf[i + 1 : nl], nl + 2
    if t == b"+":
        return line.decode(), j
    if t == b"-":
        return Err(line.decode()), j
    if t in (b":", b"("):
        return int(line), j
    if t == b",":
        return float(line), j
    if t == b"#":
        return line == b"t", j
    if t == b"_":
        return None, j
    if t in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return None, j
        if len(buf) < j + n + 2:
            raise Incomplete
        s = buf[j : j + n].decode("utf-8", "replace")
        if t == b"=":
            s = s[4:]  # "txt:" / "mkd:"
        return (Err(s) if t == b"!" else s), j + n + 2
    if t in (b"*", b"~", b">"):
        n = int(line)
        if n < 0:
            return None, j
        out = []
        for _ in range(n):
            v, j = parse(buf, j)
            out.append(v)
        return out, j
    if t == b"%":
        out = {}
        for _ in range(int(line)):
            k, j = parse(buf, j)
            v, j = parse(buf, j)
            out[k] = v
        return out, j
    if t == b"|":  # attributes precede the reply they annotate
        for _ in range(2 * int(line)):
            _, j = parse(buf, j)
        return parse(buf, j)
    raise ValueError(f"unknown RESP type {t!r} in {buf[i:i+40]!r}")


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """One RESP connection; `resp=3` sends HELLO 3 first (its reply is kept)."""

    def __init__(self, host, port, resp=2, timeout=3.0, hello=True):
        self.addr = (host, port)
        self.sock = socket.create_connection(self.addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.resp = resp
        self.hello_raw = None
        if resp == 3 and hello:
            self.hello_raw, v = self.call("HELLO", "3")
            if isinstance(v, Err):
                raise RuntimeError(f"HELLO 3 refused by {host}:{port}: {v}")

    def send(self, *args):
        self.sock.sendall(encode(args))

    def read(self):
        """(raw bytes, value) of the next reply."""
        while True:
            if self.buf:
                try:
                    v, j = parse(self.buf)
                    raw, self.buf = self.buf[:j], self.buf[j:]
                    return raw, v
                except Incomplete:
                    pass
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError(f"{self.addr} closed")
            self.buf += d

    def call(self, *args):
        self.send(*args)
        return self.read()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def fields(v):
    """SENTINEL MASTER / REPLICAS entry as a dict (RESP2 flat list or RESP3 map)."""
    if isinstance(v, dict):
        return v
    if isinstance(v, list):
        return dict(zip(v[::2], v[1::2]))
    return {}


# ----- the lab -----------------------------------------------------------------


class Lab:
    def __init__(self, flavor, bindir, workdir):
        self.flavor = flavor
        self.workdir = workdir
        if flavor == "redis":
            self.server = shutil.which("redis-server")
            self.sentinel_cmd = [shutil.which("redis-sentinel")]
            self.sentinel_tail = []
        else:
            self.server = os.path.join(bindir, "valkey-server")
            self.sentinel_cmd = [self.server]
            self.sentinel_tail = ["--sentinel"]
        self.data = {}
        self.sentinels = {}
        self.all_procs = []

    def spawn(self, args, log):
        f = open(os.path.join(self.workdir, log), "ab")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        self.all_procs.append(p)
        return p

    def data_args(self, n, master=None, password=None):
        d = os.path.join(self.workdir, f"n{n}")
        os.makedirs(d, exist_ok=True)
        a = [self.server, "--port", str(REDIS_PORT), "--bind", ip(n),
             "--protected-mode", "no", "--save", "", "--appendonly", "no",
             "--repl-diskless-sync-delay", "0", "--dir", d, "--daemonize", "no",
             "--logfile", os.path.join(d, "server.log"),
             # One namespace, all on lo: the kernel would give every
             # connection the destination's address as its source.
             "--replica-announce-ip", ip(n)]
        if master:
            a += ["--replicaof", ip(master), str(REDIS_PORT)]
        if password:
            a += ["--requirepass", password, "--masterauth", password]
        return a

    def start_data(self, n, master=None, password=None):
        self.data[n] = self.spawn(self.data_args(n, master, password), f"n{n}.out")
        wait(5, lambda: self.try_call(ip(n), REDIS_PORT, "PING") is not None,
             f"data node n{n} did not start")

    def start_sentinel(self, n, name=NAME, master=1, password=None):
        d = os.path.join(self.workdir, f"n{n}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "sentinel.conf")
        lines = [f"port {SENTINEL_PORT}", f"bind {ip(n)}", f"sentinel announce-ip {ip(n)}",
                 "protected-mode no",
                 "daemonize no", f"dir {d}", f"logfile {d}/sentinel.log",
                 f"sentinel monitor {name} {ip(master)} {REDIS_PORT} {1 if password else 2}",
                 f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
                 f"sentinel parallel-syncs {name} 1"]
        if password:
            lines += [f"requirepass {password}", f"sentinel auth-pass {name} {password}"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        args = self.sentinel_cmd + [conf] + self.sentinel_tail
        self.sentinels[n] = self.spawn(args, f"s{n}.out")
        wait(5, lambda: self.try_call(ip(n), SENTINEL_PORT, "PING") is not None,
             f"Sentinel n{n} did not start")

    @staticmethod
    def try_call(host, port, *args):
        try:
            c = Conn(host, port, timeout=1)
            try:
                return c.call(*args)[1]
            finally:
                c.close()
        except OSError:
            return None

    def data_call(self, n, *args):
        return self.try_call(ip(n), REDIS_PORT, *args)

    def sentinel_call(self, n, *args):
        return self.try_call(ip(n), SENTINEL_PORT, *args)

    def kill_data(self, n):
        p = self.data.pop(n)
        p.kill()
        p.wait()

    def stop(self):
        for p in self.all_procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                except ProcessLookupError:
                    pass
                p.wait()

    def stable(self, master):
        """Every Sentinel names `master`, sees 2 healthy replicas and 2 peers."""
        for s in NODES:
            addr = self.sentinel_call(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
            if not addr or addr[0] != ip(master):
                return f"s{s} names {addr}"
            m = fields(self.sentinel_call(s, "SENTINEL", "MASTER", NAME))
            if m.get("flags") != "master" or m.get("num-other-sentinels") != "2":
                return f"s{s} master {m.get('flags')} peers {m.get('num-other-sentinels')}"
            reps = [fields(r) for r in self.sentinel_call(s, "SENTINEL", "REPLICAS", NAME) or []]
            ok = [r for r in reps if r.get("flags") == "slave"
                  and r.get("master-link-status") == "ok"
                  and r.get("master-host") == ip(master)
                  and r.get("slave-priority") == "100"]
            if len(reps) != 2 or len(ok) != 2:
                return f"s{s} replicas {[(r.get('ip'), r.get('flags'), r.get('master-link-status'), r.get('slave-priority')) for r in reps]}"
        return None

    def wait_stable(self, master, limit=60):
        why = [None]

        def check():
            why[0] = self.stable(master)
            return why[0] is None

        wait(limit, check, lambda: f"lab not stable on n{master}: {why[0]}", every=0.25)


def wait(limit, cond, what, every=0.05):
    end = now() + limit
    while now() < end:
        if cond():
            return
        time.sleep(every)
    raise RuntimeError(what() if callable(what) else what)


# ----- recording ----------------------------------------------------------------


class Recorder:
    def __init__(self, outdir):
        self.outdir = outdir
        self.names = []

    def save(self, name, raw, resp):
        path = os.path.join(self.outdir, f"{name}.resp{resp}")
        with open(path, "wb") as f:
            f.write(raw)
        self.names.append(os.path.basename(path))

    def both(self, host, port, name, *args, setup=None):
        """`args` over a RESP2 and a RESP3 connection; returns the RESP2 value."""
        val = None
        for resp in (2, 3):
            c = Conn(host, port, resp=resp)
            try:
                if setup:
                    for s in setup:
                        c.call(*s)
                raw, v = c.call(*args)
                self.save(name, raw, resp)
                val = v if resp == 2 else val
            finally:
                c.close()
        return val


class Events:
    """Subscribed to every Sentinel over RESP2 and RESP3; stamps each message."""

    def __init__(self, rec):
        self.rec = rec
        self.lock = threading.Lock()
        self.log = []  # (t, sentinel, resp, channel, payload)
        self.saved = set()
        self.conns = []
        self.threads = []
        self.cond = threading.Condition(self.lock)
        self.hooks = []
        for s in NODES:
            for resp in (2, 3):
                c = Conn(ip(s), SENTINEL_PORT, resp=resp, timeout=None)
                c.send("SUBSCRIBE", *CHANNELS)
                for k in range(len(CHANNELS)):
                    raw, _ = c.read()
                    if s == 1 and k == 0:
                        rec.save("subscribe-confirm", raw, resp)
                self.conns.append(c)
                t = threading.Thread(target=self.reader, args=(c, s, resp), daemon=True)
                t.start()
                self.threads.append(t)

    def reader(self, c, s, resp):
        while True:
            try:
                raw, v = c.read()
            except (OSError, ConnectionError):
                return
            t = now()
            if not (isinstance(v, list) and len(v) == 3 and v[0] == "message"):
                continue
            channel, payload = v[1], v[2]
            words = payload.split()
            kind = words[0] if words and words[0] in ("master", "slave", "sentinel") else None
            key = f"event{channel}" + (f".{kind}" if kind else "")
            with self.cond:
                self.log.append((t, s, resp, channel, payload))
                if (key, resp) not in self.saved:
                    self.saved.add((key, resp))
                    self.rec.save(key, raw, resp)
                hooks = list(self.hooks)
                self.cond.notify_all()
            for h in hooks:
                h(t, s, resp, channel, payload)

    def mark(self):
        with self.lock:
            return len(self.log)

    def wait_for(self, start, channel, limit, sentinel=None):
        """First (t, s, payload) of `channel` logged after index `start`."""
        end = now() + limit
        with self.cond:
            while True:
                for t, s, resp, ch, p in self.log[start:]:
                    if ch == channel and resp == 2 and (sentinel is None or s == sentinel):
                        return t, s, p
                left = end - now()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def since(self, start):
        with self.lock:
            return list(self.log[start:])

    def close(self):
        for c in self.conns:
            c.close()


class RolePoller(threading.Thread):
    """ROLE every `every` s on one kept connection; stamps the first `master`.

    Sentinel promotes with MULTI, SLAVEOF NO ONE, CONFIG REWRITE, CLIENT KILL
    TYPE normal, CLIENT KILL TYPE pubsub, EXEC: the promotion itself drops
    this connection, so a drop is stamped too and the poller reconnects."""

    def __init__(self, n, every=0.002, rec=None, prefix=None):
        super().__init__(daemon=True)
        self.n = n
        self.rec, self.prefix, self.saved = rec, prefix, set()
        self.every = every
        self.conn = Conn(ip(n), REDIS_PORT)
        self.first_master = None
        self.first_drop = None
        self.polls = 0
        self.stop = False

    def run(self):
        while not self.stop:
            t = now()
            try:
                if self.conn is None:
                    self.conn = Conn(ip(self.n), REDIS_PORT, timeout=0.5)
                raw, v = self.conn.call("ROLE")
            except (OSError, ConnectionError):
                if self.first_drop is None:
                    self.first_drop = t
                if self.conn:
                    self.conn.close()
                self.conn = None
                time.sleep(self.every)
                continue
            self.polls += 1
            if self.rec and isinstance(v, list) and v:
                # ROLE of a replica: [slave, host, port, state, offset].
                key = v[0] if v[0] == "master" else f"{v[0]}-{v[3]}"
                if key not in self.saved:
                    self.saved.add(key)
                    self.rec.save(f"{self.prefix}-role-{key}", raw, 2)
            if isinstance(v, list) and v and v[0] == "master" and self.first_master is None:
                self.first_master = t
            time.sleep(self.every)


class LeaderPoller(threading.Thread):
    """SENTINEL MASTER / REPLICAS / GET-MASTER-ADDR-BY-NAME on the leader every
    `every` s over RESP2 and RESP3, saving the first reply of each state."""

    def __init__(self, rec, s, prefix, old_master, every=0.01):
        super().__init__(daemon=True)
        self.old_master = old_master
        self.rec, self.s, self.prefix, self.every = rec, s, prefix, every
        self.conns = {r: Conn(ip(s), SENTINEL_PORT, resp=r) for r in (2, 3)}
        self.seen = set()
        self.transitions = []  # (t, what)
        self.stop = False
        self.err = None

    def first(self, key, raw, resp, t, what):
        if (key, resp) in self.seen:
            return
        self.seen.add((key, resp))
        self.rec.save(f"{self.prefix}-{key}", raw, resp)
        if resp == 2:
            self.transitions.append((t, what))

    def run(self):
        while not self.stop:
            for resp, c in self.conns.items():
                try:
                    t = now()
                    raw, m = c.call("SENTINEL", "MASTER", NAME)
                    f = fields(m)
                    state = f.get("failover-state", "none")
                    self.first(f"master-{state}", raw, resp, t,
                               f"master flags={f.get('flags')} failover-state={state} config-epoch={f.get('config-epoch')}")
                    raw, reps = c.call("SENTINEL", "REPLICAS", NAME)
                    for r in reps or []:
                        rf = fields(r)
                        flags = rf.get("flags", "")
                        if "promoted" in flags.split(","):
                            self.first("replicas-promoted", raw, resp, t,
                                       f"replica {rf.get('ip')} flags={flags} role-reported={rf.get('role-reported')}")
                        if rf.get("role-reported") == "master":
                            self.first("replicas-role-reported-master", raw, resp, t,
                                       f"replica {rf.get('ip')} flags={flags} role-reported=master")
                    raw, a = c.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
                    which = "old" if a and a[0] == self.old_master else "new"
                    self.first(f"get-master-addr-{which}", raw, resp, t,
                               f"get-master-addr {a}")
                except (OSError, ConnectionError, RuntimeError) as e:
                    self.err = str(e)
                    return
            time.sleep(self.every)


# ----- the captures -------------------------------------------------------------


def steady(lab, rec):
    s1, m, r = ip(1), ip(1), ip(2)
    sp = SENTINEL_PORT
    rec.both(s1, sp, "sentinel-master", "SENTINEL", "MASTER", NAME)
    rec.both(s1, sp, "sentinel-get-master-addr", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
    rec.both(s1, sp, "sentinel-replicas", "SENTINEL", "REPLICAS", NAME)
    rec.both(s1, sp, "sentinel-sentinels", "SENTINEL", "SENTINELS", NAME)
    rec.both(s1, sp, "sentinel-master-unknown", "SENTINEL", "MASTER", "nosuchmaster")
    rec.both(s1, sp, "sentinel-get-master-addr-unknown", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nosuchmaster")
    rec.both(s1, sp, "sentinel-replicas-unknown", "SENTINEL", "REPLICAS", "nosuchmaster")
    # Valkey's newer spellings, asked of both so the difference is on record.
    rec.both(s1, sp, "sentinel-primary", "SENTINEL", "PRIMARY", NAME)
    rec.both(s1, sp, "sentinel-get-primary-addr", "SENTINEL", "GET-PRIMARY-ADDR-BY-NAME", NAME)
    rec.both(s1, sp, "sentinel-role", "ROLE")
    c = Conn(s1, sp, resp=3)
    rec.save("sentinel-hello", c.hello_raw, 3)
    c.close()
    # A data node asked as if it were a Sentinel.
    rec.both(m, REDIS_PORT, "data-sentinel-master", "SENTINEL", "MASTER", NAME)
    rec.both(m, REDIS_PORT, "data-sentinel-get-master-addr", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
    c = Conn(m, REDIS_PORT, resp=3)
    rec.save("data-hello", c.hello_raw, 3)
    c.close()
    rec.both(m, REDIS_PORT, "role-master", "ROLE")
    rec.both(m, REDIS_PORT, "info-replication-master", "INFO", "replication")
    rec.both(r, REDIS_PORT, "role-replica", "ROLE")
    rec.both(r, REDIS_PORT, "info-replication-replica", "INFO", "replication")


def auth_captures(lab, rec):
    """NOAUTH and WRONGPASS from the password-protected Sentinel and data node."""
    for port, who in ((SENTINEL_PORT, "sentinel"), (REDIS_PORT, "data")):
        cmd = ("SENTINEL", "MASTER", AUTH_NAME) if who == "sentinel" else ("ROLE",)
        c = Conn(ip(AUTH_NODE), port)
        raw, _ = c.call(*cmd)
        rec.save(f"{who}-noauth", raw, 2)
        raw, _ = c.call("AUTH", "wrong-password")
        rec.save(f"{who}-wrongpass", raw, 2)
        raw, _ = c.call("AUTH", PASSWORD)
        rec.save(f"{who}-auth-ok", raw, 2)
        c.close()
        c = Conn(ip(AUTH_NODE), port, resp=3, hello=False)
        raw, _ = c.call("HELLO", "3")
        rec.save(f"{who}-noauth-hello", raw, 3)
        raw, _ = c.call("HELLO", "3", "AUTH", "default", "wrong-password")
        rec.save(f"{who}-wrongpass-hello", raw, 3)
        raw, _ = c.call("HELLO", "3", "AUTH", "default", PASSWORD)
        rec.save(f"{who}-auth-hello", raw, 3)
        raw, _ = c.call(*cmd)
        rec.save(f"{who}-authed-{'sentinel-master' if who == 'sentinel' else 'role'}", raw, 3)
        c.close()


def replicaof_no_one(lab, rec, n):
    for resp in (2, 3):
        c = Conn(ip(n), REDIS_PORT, resp=resp)
        if resp == 2:
            raw, _ = c.call("REPLICAOF", "NO", "ONE")
            rec.save("replicaof-no-one", raw, resp)
        raw, _ = c.call("ROLE")
        rec.save("role-after-replicaof-no-one", raw, resp)
        raw, _ = c.call("INFO", "replication")
        rec.save("info-replication-after-replicaof-no-one", raw, resp)
        c.close()


def agreed_master(lab, limit=30):
    """The master all three Sentinels name, once none has a failover running."""
    got = [None]

    def check():
        addrs, flags = set(), set()
        for s in NODES:
            a = lab.sentinel_call(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
            addrs.add(a[0] if a else None)
            flags.add(fields(lab.sentinel_call(s, "SENTINEL", "MASTER", NAME)).get("flags"))
        if len(addrs) == 1 and flags == {"master"}:
            got[0] = node_of(addrs.pop())
            return got[0] is not None
        return False

    wait(limit, check, "the Sentinels did not agree on a master", every=0.1)
    return got[0]


def settle(lab, run, old, new):
    """Restarts the killed master as a replica of whichever master the
    Sentinels settled on. With down-after-milliseconds 1000 a Sentinel can
    see the fresh master down and fail it over again: noted in the run."""
    cur = agreed_master(lab)
    if cur != new:
        run["then"] = f"a second failover followed, to {ip(cur)}"
        print(f"  note: {run['then']}", file=sys.stderr)
    if old is not None:
        lab.start_data(old, master=cur)
    lab.wait_stable(cur)


def masters_now(lab):
    for s in NODES:
        a = lab.sentinel_call(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
        if a:
            return node_of(a[0])
    raise RuntimeError("no Sentinel names a master")


def failover(lab, rec, events, kind, label, save_prefix=None, stop_selected=False,
             expect="+switch-master", limit=20):
    """One failover: `kind` is "kill" (kill -9 the master) or "command"
    (SENTINEL FAILOVER on s1). Returns (the run's record, old master, chosen replica)."""
    master = masters_now(lab)
    others = [n for n in NODES if n != master]
    roles = {n: RolePoller(n, rec=rec if save_prefix else None, prefix=save_prefix)
             for n in others}
    leader = {}
    stopped = []

    def hook(t, s, resp, channel, payload):
        if channel != "+selected-slave" or resp != 2 or "poller" in leader:
            return
        sel = node_of(payload.split()[2])
        leader.update(s=s, selected=sel)
        if stop_selected:
            os.kill(lab.data[sel].pid, signal.SIGSTOP)
            stopped.append(sel)
        if save_prefix:
            p = LeaderPoller(rec, s, save_prefix, ip(master))
            leader["poller"] = p
            p.start()
        else:
            leader["poller"] = None

    start = events.mark()
    events.hooks.append(hook)
    for p in roles.values():
        p.start()
    time.sleep(0.05)
    t0 = now()
    if kind == "kill":
        lab.kill_data(master)
    else:
        c = Conn(ip(1), SENTINEL_PORT)
        raw, v = c.call("SENTINEL", "FAILOVER", NAME)
        c.close()
        if v != "OK":
            raise RuntimeError(f"SENTINEL FAILOVER: {v}")
        rec.save("sentinel-failover-ok", raw, 2)
    got = events.wait_for(start, expect, limit)
    # Let the other Sentinels and the reconfiguration catch up before stopping.
    if got and expect == "+switch-master":
        for s in NODES:
            events.wait_for(start, "+switch-master", 5, sentinel=s)
        events.wait_for(start, "+failover-end", 5)
    time.sleep(0.3)
    events.hooks.remove(hook)
    for p in roles.values():
        p.stop = True
    lp = leader.get("poller")
    if lp:
        lp.stop = True
        lp.join()
    for p in roles.values():
        p.join()
        if p.conn:
            p.conn.close()
    for n in stopped:
        os.kill(lab.data[n].pid, signal.SIGCONT)
    if not got:
        raise RuntimeError(f"{label}: no {expect} within {limit} s; log: {events.since(start)}")

    first = {}
    arrivals = []
    for t, s, resp, ch, p in events.since(start):
        if resp != 2:
            continue
        ms = round((t - t0) * 1000, 1)
        arrivals.append({"ms": ms, "sentinel": f"s{s}", "channel": ch, "payload": p})
        first.setdefault(ch, ms)
    run = {
        "run": label,
        "trigger": "kill -9 of the master" if kind == "kill" else "SENTINEL FAILOVER on s1",
        "old_master": ip(master),
        "leader": f"s{leader['s']}" if leader else None,
        "selected": ip(leader["selected"]) if leader.get("selected") else None,
        "role_master_first_ms": {
            ip(n): (round((p.first_master - t0) * 1000, 1) if p.first_master else None)
            for n, p in roles.items()
        },
        "role_polls": {ip(n): p.polls for n, p in roles.items()},
        "role_conn_dropped_ms": {
            ip(n): (round((p.first_drop - t0) * 1000, 1) if p.first_drop else None)
            for n, p in roles.items()
        },
        "first_ms": first,
        "leader_poll": [
            {"ms": round((t - t0) * 1000, 1), "saw": w} for t, w in (lp.transitions if lp else [])
        ],
        "events": arrivals,
    }
    if lp and lp.err:
        run["leader_poll_error"] = lp.err
    sel = leader.get("selected")
    if sel and roles[sel].first_master and "+promoted-slave" in first:
        run["role_master_to_promoted_slave_ms"] = round(
            first["+promoted-slave"] - run["role_master_first_ms"][ip(sel)], 1)
    return run, master, leader.get("selected")


def summary(run):
    f = run["first_ms"]
    sel = run["selected"]
    keys = ["+sdown", "+odown", "+selected-slave", "+failover-state-wait-promotion",
            "+promoted-slave", "+switch-master", "+failover-end"]
    parts = [f"{k}={f[k]}" for k in keys if k in f]
    if sel:
        parts.append(f"ROLE master={run['role_master_first_ms'].get(sel)}")
    aborts = [k for k in f if k.startswith("-failover-abort")]
    parts += [f"{k}={f[k]}" for k in aborts]
    return f"{run['run']}: " + " ".join(parts)


CLOCK_FIELDS = {"last-ping-sent", "last-ok-ping-reply", "last-ping-reply", "info-refresh",
                "role-reported-time", "last-hello-message", "master-link-down-time"}


def untimed(text):
    """--json output without the fields that count milliseconds."""
    try:
        v = json.loads(text)
    except ValueError:
        return text
    if isinstance(v, dict):
        return {k: x for k, x in v.items() if k not in CLOCK_FIELDS}
    return v


def cli_compat(lab, out, valkey_cli):
    """Runs the lab's redis-cli invocations with redis-cli and valkey-cli
    against the same servers and records whether stdout and status match."""
    cases = [
        (SENTINEL_PORT, ["--json", "SENTINEL", "get-master-addr-by-name", NAME], None),
        (SENTINEL_PORT, ["--json", "SENTINEL", "MASTER", NAME], None),
        (SENTINEL_PORT, ["SENTINEL", "FAILOVER", "nosuchmaster"], None),
        (SENTINEL_PORT, ["--json", "SENTINEL", "get-master-addr-by-name", "nosuchmaster"], None),
        (REDIS_PORT, ["PING"], None),
        (REDIS_PORT, ["ROLE"], None),
        (REDIS_PORT, ["CONFIG", "GET", "bind"], None),
        (REDIS_PORT, ["GET", "nokey"], None),
        (REDIS_PORT, ["SENTINEL", "MASTER", NAME], None),
        (REDIS_PORT, [], b"SET timeline 1\nCONFIG GET bind\n"),
    ]
    results = []
    master = masters_now(lab)
    for port, args, stdin in cases:
        host = ip(1) if port == SENTINEL_PORT else ip(master)
        outs = {}
        for cli in ("redis-cli", valkey_cli):
            p = subprocess.run(["timeout", "3", cli, "-h", host, "-p", str(port)] + args,
                               input=stdin or b"", capture_output=True)
            outs[os.path.basename(cli)] = (p.returncode, p.stdout.decode(), p.stderr.decode())
        a, b = outs["redis-cli"], outs["valkey-cli"]
        results.append({"args": args, "stdin": stdin.decode() if stdin else None,
                        "same": a[:2] == b[:2],
                        "same_but_clock_fields": a[0] == b[0] and untimed(a[1]) == untimed(b[1]),
                        "redis-cli": {"status": a[0], "stdout": a[1]},
                        "valkey-cli": {"status": b[0], "stdout": b[1]}})
    # SUBSCRIBE as timeline.rs reads it: the channel line, then the payload.
    subs = {}
    for cli in ("redis-cli", valkey_cli):
        p = subprocess.Popen([cli, "-h", ip(1), "-p", str(SENTINEL_PORT), "SUBSCRIBE", "+sdown"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        subs[os.path.basename(cli)] = p
    time.sleep(0.3)
    lab.kill_data(3 if master != 3 else 2)
    victim = 3 if master != 3 else 2
    time.sleep(DOWN_AFTER_MS / 1000 + 0.8)
    texts = {}
    for k, p in subs.items():
        p.kill()
        texts[k] = p.communicate()[0].decode()
    lab.start_data(victim, master=master)
    results.append({"args": ["SUBSCRIBE", "+sdown"], "same": texts["redis-cli"] == texts["valkey-cli"],
                    "redis-cli": {"stdout": texts["redis-cli"]},
                    "valkey-cli": {"stdout": texts["valkey-cli"]}})
    with open(os.path.join(out, "cli-compat.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    lab.wait_stable(master)
    return results


# ----- namespace ----------------------------------------------------------------


def enter_netns(name):
    subprocess.run(["ip", "netns", "add", name], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for n in NODES + [AUTH_NODE]:
        subprocess.run(["ip", "addr", "add", f"{ip(n)}/32", "dev", "lo"], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("flavor", choices=["redis", "valkey"])
    ap.add_argument("--bin", help="directory with valkey-server and valkey-cli "
                    "(for redis: only valkey-cli, to compare it with redis-cli)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "tests", "fixtures", "replies"))
    ap.add_argument("--kills", type=int, default=3, help="kill -9 failovers to time")
    ap.add_argument("--keep", action="store_true", help="keep the server logs")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("record-replies.py: needs root (network namespace)")
    if a.flavor == "valkey" and not a.bin:
        sys.exit("record-replies.py: valkey needs --bin DIR (valkey-server and valkey-cli, e.g. the lab's Debian 13 launchers under /var/cache/sentinel-vip-lab/roots/*/bin)")
    sys.setswitchinterval(0.0002)  # stamps must not wait for another thread's slice

    lockf = open(LOCK, "w")
    print("waiting for the lab lock ...", file=sys.stderr)
    fcntl.flock(lockf, fcntl.LOCK_EX)

    server = shutil.which("redis-server") if a.flavor == "redis" else os.path.join(a.bin, "valkey-server")
    banner = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    version = [w for w in banner.split() if w.startswith("v=")][0][2:]
    outdir = os.path.abspath(os.path.join(a.out, f"{a.flavor}-{version}"))
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    rec = Recorder(outdir)
    ns = f"svrec{os.getpid()}"
    work = tempfile.mkdtemp(prefix=f"svrec-{a.flavor}-")
    lab = Lab(a.flavor, a.bin, work)
    events = None

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        enter_netns(ns)
        lab.start_data(1)
        lab.start_data(2, master=1)
        lab.start_data(3, master=1)
        lab.start_data(AUTH_NODE, password=PASSWORD)
        for n in NODES:
            lab.start_sentinel(n)
        lab.start_sentinel(AUTH_NODE, name=AUTH_NAME, master=AUTH_NODE, password=PASSWORD)
        lab.wait_stable(1)
        print(f"{a.flavor} {version}: lab up in {work}", file=sys.stderr)

        steady(lab, rec)
        auth_captures(lab, rec)
        replicaof_no_one(lab, rec, 3)
        lab.wait_stable(1)  # Sentinel turns n3 back into a replica
        if a.bin:
            cli_compat(lab, outdir, os.path.join(a.bin, "valkey-cli"))

        events = Events(rec)
        runs = []
        run, old, new = failover(lab, rec, events, "command", "sentinel-failover",
                                 save_prefix="failover")
        runs.append(run)
        print(summary(run), file=sys.stderr)
        settle(lab, run, None, new)

        for k in range(a.kills):
            run, old, new = failover(lab, rec, events, "kill", f"kill-{k + 1}",
                                     save_prefix="kill-failover" if k == 0 else None)
            runs.append(run)
            print(summary(run), file=sys.stderr)
            settle(lab, run, old, new)

        # No replica may be promoted: the leader aborts after selecting none.
        master = masters_now(lab)
        reps = [n for n in NODES if n != master]
        for n in reps:
            lab.data_call(n, "CONFIG", "SET", "replica-priority", "0")

        def all_zero():
            for s in NODES:
                for r in lab.sentinel_call(s, "SENTINEL", "REPLICAS", NAME) or []:
                    if fields(r).get("slave-priority") != "0":
                        return False
            return True

        wait(30, all_zero, "Sentinels did not see replica-priority 0", every=0.25)
        c = Conn(ip(1), SENTINEL_PORT)
        raw, _ = c.call("SENTINEL", "FAILOVER", NAME)
        rec.save("sentinel-failover-nogoodslave", raw, 2)
        c.close()
        run, old, _ = failover(lab, rec, events, "kill", "abort-no-good-slave",
                               expect="-failover-abort-no-good-slave")
        runs.append(run)
        print(summary(run), file=sys.stderr)
        for n in reps:
            lab.data_call(n, "CONFIG", "SET", "replica-priority", "100")
        lab.start_data(old)
        lab.wait_stable(old)

        # The selected replica stopped before it can obey SLAVEOF NO ONE.
        run, _, _ = failover(lab, rec, events, "kill", "abort-slave-timeout",
                             stop_selected=True, expect="-failover-abort-slave-timeout",
                             limit=FAILOVER_TIMEOUT_MS / 1000 + 10)
        runs.append(run)
        print(summary(run), file=sys.stderr)

        with open(os.path.join(outdir, "failovers.json"), "w") as f:
            json.dump({"server": banner.strip(), "down_after_ms": DOWN_AFTER_MS,
                       "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
                       "role_poll_every_ms": 2, "leader_poll_every_ms": 10,
                       "runs": runs}, f, indent=1)
            f.write("\n")
        print(f"wrote {len(rec.names)} replies to {outdir}", file=sys.stderr)
    finally:
        if events:
            events.close()
        lab.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if a.keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

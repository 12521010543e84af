#!/usr/bin/env python3
"""Drives one `kubebridge dns` the way systemd and an operator would, and prints a JSON
report for OperationsTests.swift: sd_notify messages (READY, WATCHDOG, RELOADING,
STOPPING) on a NOTIFY_SOCKET, the admin endpoints, reloads (good and broken config)
and the environment overrides. Loopback only; every process it starts is killed."""
import json, os, signal, socket, struct, subprocess, sys, tempfile, time, urllib.request

BIN, FAKE = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp(prefix="kb-ops-")
procs = []
report = {}

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def fake(addr, mode="ok", extra=()):
    port = free_port()
    state = os.path.join(tmp, f"fake-{addr}.json")
    p = subprocess.Popen([sys.executable, FAKE, "--mode", mode, "--listen", addr, "--port", str(port), "--state", state, *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    for _ in range(100):
        if os.path.exists(state): break
        time.sleep(0.05)
    return port, state

def count(state, name):
    try:
        with open(state) as f: return json.load(f).get("counts", {}).get(name, 0)
    except Exception: return 0

def query(port, name, qtype=1, timeout=3.0):
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
    try:
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
        return {"rcode": data[3] & 15, "answers": struct.unpack(">H", data[6:8])[0], "last4": list(data[-4:])}
    except socket.timeout:
        return {"rcode": -1}
    finally:
        s.close()

def http(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception as e:
        return -1, str(e)

notify_path = os.path.join(tmp, "notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
notify.settimeout(0.2)
messages = []

def collect(seconds, until=None):
    end = time.time() + seconds
    while time.time() < end:
        try:
            m = notify.recv(4096).decode()
            messages.append(m)
            if until and until in m: return True
        except socket.timeout:
            pass
    return False

try:
    up_port, up_state = fake("127.0.0.5")
    corp_port, corp_state = fake("127.0.0.6")
    dns_port, admin_port = free_port(), free_port()
    cfg = os.path.join(tmp, "kubebridge.toml")
    base = f"""[dns]
listen = "127.0.0.1:{dns_port}"
upstream = "127.0.0.5:{up_port}"
cluster-dns = "127.0.0.5:{up_port}"
admin = "127.0.0.1:{admin_port}"
threads = 2
"""
    open(cfg, "w").write(base)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="400000")
    log = open(os.path.join(tmp, "kb.log"), "w+")
    kb = subprocess.Popen([BIN, "dns", "--config", cfg], env=env, stderr=log, stdout=subprocess.DEVNULL)
    procs.append(kb)
    report["ready"] = collect(10, "READY=1")
    report["watchdog"] = collect(2, "WATCHDOG=1")
    first = query(dns_port, "www.example.test")
    report["first"] = first
    status, body = http(admin_port, "/metrics")
    report["metrics_status"] = status
    report["metrics"] = body
    report["healthz"] = http(admin_port, "/healthz")[0]
    report["readyz"] = http(admin_port, "/readyz")[0]
    report["notfound"] = http(admin_port, "/nope")[0]

    # Reload: add a forward zone. The cached name must stay cached.
    open(cfg, "w").write(base + f'forward = "corp.test=127.0.0.6:{corp_port}"\n')
    messages.clear()
    kb.send_signal(signal.SIGHUP)
    report["reload_ready"] = collect(5, "READY=1")
    report["reload_messages"] = list(messages)
    report["corp"] = query(dns_port, "dc1.corp.test")
    report["corp_count"] = count(corp_state, "dc1.corp.test.")
    query(dns_port, "www.example.test")
    report["cached_count_after_reload"] = count(up_state, "www.example.test.")

    # A broken config: the old one stays in force, the error names file and line.
    open(cfg, "w").write(base + 'forward = "corp.test=127.0.0.6:1"\nmax-udp-size = "big"\n')
    kb.send_signal(signal.SIGHUP)
    collect(2, "READY=1")
    time.sleep(0.3)
    report["after_bad_reload"] = query(dns_port, "dc2.corp.test")
    report["corp_count_after_bad"] = count(corp_state, "dc2.corp.test.")

    # No query is lost while reloads happen under load: 3,000 queries (a third of them
    # unique misses) at a bounded rate, with a SIGHUP every 200 ms, each answered.
    open(cfg, "w").write(base + f'forward = "corp.test=127.0.0.6:{corp_port}"\n')
    load = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    load.settimeout(0.002)
    sent, answered, ids = 0, 0, set()
    start = time.time()
    next_hup = start + 0.2
    hups = 0
    def drain():
        global answered
        while True:
            try:
                data = load.recv(4096)
            except (socket.timeout, BlockingIOError):
                return
            qid = int.from_bytes(data[:2], "big")
            if qid in ids:
                ids.discard(qid); answered += 1
    for i in range(3000):
        name = f"u{i}.load.test" if i % 3 == 0 else f"h{i % 50}.load.test"
        qid = i + 1
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        for label in name.split("."):
            q += bytes([len(label)]) + label.encode()
        q += b"\0" + struct.pack(">HH", 1, 1)
        ids.add(qid)
        load.sendto(q, ("127.0.0.1", dns_port)); sent += 1
        if i % 10 == 9:
            drain()
        if time.time() >= next_hup and hups < 12:
            kb.send_signal(signal.SIGHUP); hups += 1; next_hup += 0.2
        time.sleep(0.0008)
    end = time.time() + 5
    load.settimeout(0.2)
    while ids and time.time() < end:
        drain()
    report["reload_load"] = {"sent": sent, "answered": answered, "hups": hups, "seconds": round(time.time() - start, 2)}

    collect(0.5)          # drain: the notify queue holds only a few datagrams
    messages.clear()
    kb.send_signal(signal.SIGTERM)
    report["exit"] = kb.wait(10)
    collect(0.5)
    report["stop_messages"] = list(messages)
    log.seek(0)
    report["log"] = log.read()

    # Environment beats the file, flags beat the environment.
    silent_port, silent_state = fake("127.0.0.7", "silent")
    open(cfg, "w").write(f'[dns]\nlisten = "127.0.0.1:{dns_port}"\nupstream = "127.0.0.7:{silent_port}"\n'
                         f'cluster-dns = "127.0.0.7:{silent_port}"\n')
    env2 = dict(os.environ, KUBEBRIDGE_UPSTREAM=f"127.0.0.5:{up_port}", KUBEBRIDGE_UPSTREAM_TIMEOUT="300")
    kb2 = subprocess.Popen([BIN, "dns", "--config", cfg], env=env2, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    procs.append(kb2)
    time.sleep(1.0)
    report["env_answer"] = query(dns_port, "env.example.test")
    report["env_fake_count"] = count(up_state, "env.example.test.")
    kb2.send_signal(signal.SIGTERM); kb2.wait(10)
    kb3 = subprocess.Popen([BIN, "dns", "--config", cfg, "--upstream", f"127.0.0.6:{corp_port}"], env=env2,
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    procs.append(kb3)
    time.sleep(1.0)
    report["flag_answer"] = query(dns_port, "flag.example.test")
    report["flag_fake_count"] = count(corp_state, "flag.example.test.")
    kb3.send_signal(signal.SIGTERM); kb3.wait(10)
    bad = subprocess.run([BIN, "dns", "--config", cfg], env=dict(os.environ, KUBEBRIDGE_THREADS="lots"),
                         capture_output=True, timeout=10)
    report["bad_env_exit"] = bad.returncode
    report["bad_env_stderr"] = bad.stderr.decode()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
print(json.dumps(report))

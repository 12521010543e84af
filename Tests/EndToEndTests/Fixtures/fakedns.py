#!/usr/bin/env python3
"""A tiny scripted DNS upstream for kubebridge's end-to-end tests (stdlib only).

Listens on UDP and TCP on the same address and port, answers every query according
to --mode, and after each query rewrites --state (JSON, written atomically):
  {"port": P, "udp": N, "tcp": M, "queries": [{"transport", "id", "sport", "qname", "qtype", "time"}]}

Modes:
  ok             A 192.0.2.<n> (n = queries seen so far), TTL 300
  ad             as ok, with the AD and CD bits set in the reply
  silent         count, never answer
  servfail       SERVFAIL
  wrong-id       answer A 6.6.6.6 with a different message ID
  wrong-port     answer A 6.6.6.6 from a different UDP source port (TCP: no answer)
  wrong-question answer A 6.6.6.6 for spoofed.invalid. instead of the asked question
  tc             UDP: TC=1 and no records; TCP: the full ok answer
  refused        REFUSED
  wrong-address  answer A 6.6.6.6 from another loopback address (127.0.0.7, same port)
  tc-always      TC=1 and no records over UDP and over TCP (a TC loop)
  tcp-cut        UDP: TC=1; TCP: the length and the first half of the ok answer, then close
  tcp-garbled    UDP: TC=1; TCP: an ok answer cut 6 bytes short, sent with its own (short) length
  nxdomain       NXDOMAIN with an SOA for the last two labels of the name in the authority
                 section: TTL --soa-ttl (60), MINIMUM --soa-minimum (3)
--then-ok makes the wrong-* modes also send the genuine ok answer 50 ms after the spoof.
--ttl N sets the TTL of ok/ad answers (300). --aaaa makes ok/ad also answer AAAA queries
(2001:db8::<n>) instead of NODATA. --delay MS sends every answer MS milliseconds late
from a timer, so other queries are answered (and counted) meanwhile.
--counts-only records no per-query list, only {"counts": {qname: n}} (and the totals),
and rewrites the state at most every 50 ms: for floods of tens of thousands of queries.
"counts" (per lower-case qname) is present in every mode.
The process exits when its parent dies, so a crashed test run leaves nothing behind.
"""
import argparse, json, os, socket, struct, sys, threading, time

p = argparse.ArgumentParser()
p.add_argument("--mode", required=True,
               choices=["ok", "ad", "silent", "servfail", "refused", "wrong-id", "wrong-port", "wrong-address",
                        "wrong-question", "tc", "tc-always", "tcp-cut", "tcp-garbled", "nxdomain"])
p.add_argument("--listen", default="127.0.0.1")
p.add_argument("--port", type=int, default=0)
p.add_argument("--state", required=True)
p.add_argument("--then-ok", action="store_true")
p.add_argument("--ttl", type=int, default=300)
p.add_argument("--aaaa", action="store_true")
p.add_argument("--delay", type=int, default=0, help="milliseconds")
p.add_argument("--soa-ttl", type=int, default=60)
p.add_argument("--soa-minimum", type=int, default=3)
p.add_argument("--counts-only", action="store_true")
args = p.parse_args()

lock = threading.Lock()
state = {"port": 0, "udp": 0, "tcp": 0, "queries": [], "counts": {}}
dirty = threading.Event()
SPOOF = bytes([6, 6, 6, 6])
CUT = "cut"  # tcp-cut: send the length and half the message, then close


def save():
    tmp = args.state + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, args.state)


def parse_question(msg):
    """Returns (question bytes as sent, lower-case name, qtype, end offset, has OPT) or None."""
    if len(msg) < 12:
        return None
    i, labels = 12, []
    while True:
        if i >= len(msg):
            return None
        n = msg[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > len(msg):
            return None
        labels.append(msg[i + 1:i + 1 + n].decode("latin-1").lower())
        i += 1 + n
    if i + 4 > len(msg):
        return None
    qtype = struct.unpack("!H", msg[i:i + 2])[0]
    arcount = struct.unpack("!H", msg[10:12])[0]
    return msg[12:i + 4], ".".join(labels) + ".", qtype, i + 4, arcount > 0


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def reply(qid, query_flags, question, qtype, rcode=0, answer_ip=None, tc=False, ad=False, opt=False, n=0,
          authority=b"", nscount=0):
    rd = query_flags & 0x0100
    flags = 0x8000 | rd | 0x0080 | rcode  # QR, RD echoed, RA
    if tc:
        flags |= 0x0200
    if ad:
        flags |= 0x0020 | 0x0010
    answers = b""
    ancount = 0
    if answer_ip is not None and qtype == 1 and not tc:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, args.ttl, 4) + answer_ip
        ancount = 1
    elif answer_ip is not None and qtype == 28 and args.aaaa and not tc:
        address = bytes([0x20, 0x01, 0x0d, 0xb8] + [0] * 11 + [answer_ip[3]])
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, args.ttl, 16) + address
        ancount = 1
    additional = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if opt else b""
    header = struct.pack("!HHHHHH", qid, flags, 1, ancount, nscount, 1 if opt else 0)
    return header + question + answers + authority + additional


def soa_record(qname):
    """SOA of the last two labels of qname: TTL --soa-ttl, MINIMUM --soa-minimum."""
    zone = ".".join(qname.strip(".").split(".")[-2:]) + "."
    rdata = encode_name("ns." + zone) + encode_name("hostmaster." + zone) + struct.pack(
        "!IIIII", 1, 7200, 1800, 86400, args.soa_minimum)
    return encode_name(zone) + struct.pack("!HHIH", 6, 1, args.soa_ttl, len(rdata)) + rdata


def handle(msg, transport, sport):
    """Returns the list of (delay seconds, bytes, use spoof socket) to send back."""
    q = parse_question(msg)
    if q is None or msg[2] & 0x80:
        return []
    question, qname, qtype, _, opt = q
    qid, qflags = struct.unpack("!HH", msg[:4])
    with lock:
        state[transport] += 1
        state["counts"][qname] = state["counts"].get(qname, 0) + 1
        n = state["udp"] + state["tcp"]
        if args.counts_only:
            dirty.set()
        else:
            state["queries"].append({"transport": transport, "id": qid, "sport": sport, "qname": qname,
                                     "qtype": qtype, "time": round(time.time(), 3)})
            save()
    good_ip = bytes([192, 0, 2, (n - 1) % 254 + 1])
    ok = reply(qid, qflags, question, qtype, answer_ip=good_ip, opt=opt)
    mode = args.mode
    if mode == "nxdomain":
        return [(0, reply(qid, qflags, question, qtype, rcode=3, opt=opt, authority=soa_record(qname), nscount=1),
                 False)]
    if mode == "ok":
        return [(0, ok, False)]
    if mode == "ad":
        return [(0, reply(qid, qflags, question, qtype, answer_ip=good_ip, ad=True, opt=opt), False)]
    if mode == "silent":
        return []
    if mode == "servfail":
        return [(0, reply(qid, qflags, question, qtype, rcode=2, opt=opt), False)]
    if mode == "refused":
        return [(0, reply(qid, qflags, question, qtype, rcode=5, opt=opt), False)]
    truncated = reply(qid, qflags, question, qtype, tc=True, opt=opt)
    if mode == "tc":
        return [(0, truncated if transport == "udp" else ok, False)]
    if mode == "tc-always":
        return [(0, truncated, False)]
    if mode in ("tcp-cut", "tcp-garbled"):
        if transport == "udp":
            return [(0, truncated, False)]
        # Without the OPT, so that cutting bytes off the end cuts into the answer record.
        plain = reply(qid, qflags, question, qtype, answer_ip=good_ip)
        if mode == "tcp-cut":
            return [(0, CUT, plain)]
        return [(0, plain[:-6], False)]
    if mode == "wrong-id":
        spoof = reply(qid ^ 0x5A5A, qflags, question, qtype, answer_ip=SPOOF, opt=opt)
        sends = [(0, spoof, False)]
    elif mode in ("wrong-port", "wrong-address"):
        if transport == "tcp":
            return []
        sends = [(0, reply(qid, qflags, question, qtype, answer_ip=SPOOF, opt=opt), True)]
    else:  # wrong-question
        other = encode_name("spoofed.invalid.") + question[-4:]
        sends = [(0, reply(qid, qflags, other, qtype, answer_ip=SPOOF, opt=opt), False)]
    if args.then_ok:
        sends.append((0.05, ok, False))
    return sends


def bind_pair(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((host, port))
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind((host, u.getsockname()[1]))
        except OSError:
            u.close(); t.close()
            if port:
                raise
            continue
        t.listen(16)
        return u, t, fam
    raise SystemExit("fakedns: no free port")


udp, tcp, family = bind_pair(args.listen, args.port)
state["port"] = udp.getsockname()[1]
spoof_sock = socket.socket(family, socket.SOCK_DGRAM)
if args.mode == "wrong-address":
    spoof_sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.7", state["port"]))
else:
    spoof_sock.bind((args.listen, 0))
save()


def send_later(seconds, send, data):
    """--delay: answer from a timer thread so the receive loop keeps going."""
    t = threading.Timer(seconds, send, args=(data,))
    t.daemon = True
    t.start()


def udp_loop():
    while True:
        msg, peer = udp.recvfrom(65535)
        for delay, data, use_spoof in handle(msg, "udp", peer[1]):
            time.sleep(delay)
            sock = spoof_sock if use_spoof else udp
            if args.delay:
                send_later(args.delay / 1000, lambda d, s=sock, p=peer: s.sendto(d, p), data)
            else:
                sock.sendto(data, peer)


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def tcp_conn(conn, peer):
    with conn:
        while True:
            head = recv_exact(conn, 2)
            if head is None:
                return
            msg = recv_exact(conn, struct.unpack("!H", head)[0])
            if msg is None:
                return
            for delay, data, third in handle(msg, "tcp", peer[1]):
                if data is CUT:
                    conn.sendall(struct.pack("!H", len(third)) + third[:len(third) // 2])
                    time.sleep(0.05)
                    return
                time.sleep(delay)
                if args.delay:
                    time.sleep(args.delay / 1000)
                conn.sendall(struct.pack("!H", len(data)) + data)


def tcp_loop():
    while True:
        conn, peer = tcp.accept()
        threading.Thread(target=tcp_conn, args=(conn, peer), daemon=True).start()


def saver_loop():
    """--counts-only: write the state at most every 50 ms."""
    while True:
        dirty.wait()
        time.sleep(0.05)
        dirty.clear()
        with lock:
            save()


parent = os.getppid()
if args.counts_only:
    threading.Thread(target=saver_loop, daemon=True).start()
threading.Thread(target=udp_loop, daemon=True).start()
threading.Thread(target=tcp_loop, daemon=True).start()
print(f"fakedns {args.mode} ready on {args.listen} port {state['port']}", flush=True)
while os.getppid() == parent:
    time.sleep(0.2)

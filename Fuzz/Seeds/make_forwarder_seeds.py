#!/usr/bin/env python3
"""Writes the structured seed inputs of FuzzForwarder (Fuzz/Corpus/forwarder/seed-*.bin).

An input is [config u8][random seed u8] followed by steps; each step starts with an
opcode byte (mod 9) and reads its own fields, as FuzzForwarder.swift's Harness.step does:
  0 query:    len u16, bytes, flags u8 (bit0 TCP, bit1 denied source)
  2 answer:   which u8 (0 = latest sent), mode u8, flags u16, an/ns/ar u8 x3, len u16, body, spoof u8
  4 tcp:      which u8, then as answer without spoof
  5 tcpfail:  which u16
  6 time:     u16 (x 8 ms), then expire()
  7 repeat:   pick u16, id u16, case mask u8, flags u8
  8 reload:   pick u16
"""
import os, struct, sys

def name(s):
    out = b""
    for label in s.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def query(qname, qtype=1, qid=0x1234, flags=0x0100, edns=None, do=False):
    m = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0) + name(qname) + struct.pack(">HH", qtype, 1)
    if edns:
        m += b"\0" + struct.pack(">HHIH", 41, edns, 0x8000 if do else 0, 0)
    return m

def rr(rtype, ttl, rdata, owner=b"\xc0\x0c"):
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata

OPT = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)

def q(msg, flags=0):
    return bytes([0]) + struct.pack(">H", len(msg)) + msg + bytes([flags])

def ans(body, an, ns=0, ar=0, flags=0x8180, which=0, mode=0, spoof=0):
    return bytes([2, which, mode]) + struct.pack(">H", flags) + bytes([an, ns, ar]) + struct.pack(">H", len(body)) + body + bytes([spoof])

def tcp(body, an, ns=0, ar=0, flags=0x8180, which=0, mode=0):
    return bytes([4, which, mode]) + struct.pack(">H", flags) + bytes([an, ns, ar]) + struct.pack(">H", len(body)) + body

def time(ms):
    return bytes([6]) + struct.pack(">H", ms // 8)

def repeat(pick=0, qid=0x4321, mask=0x55, flags=0):
    return bytes([7]) + struct.pack(">HHBB", pick, qid, mask, flags)

def reload(pick):
    return bytes([8]) + struct.pack(">H", pick)

A = rr(1, 300, bytes([192, 0, 2, 1]))
seeds = {
    "a-hit": bytes([0x21, 1]) + q(query("www.Example.test")) + ans(A, 1) + time(10_000) + repeat() + repeat(qid=7, mask=0xff),
    "edns-cname": bytes([0x01, 2]) + q(query("WWW.example.test", edns=4096, do=True))
        + ans(rr(5, 60, name("web.example.test")) + rr(1, 60, bytes([192, 0, 2, 9]), owner=b"\x03web\xc0\x10") + OPT, 2, 0, 1)
        + repeat() + time(30_000) + repeat(flags=1),
    "cluster-failover": bytes([0x08, 3]) + q(query("web.prod.svc.cluster.local", edns=1232)) + time(1_100)
        + ans(rr(1, 5, bytes([172, 20, 0, 10])), 1) + time(6_000) + repeat() + time(2_000),
    "tc-then-tcp": bytes([0x02, 4]) + q(query("big.example.test", qtype=16)) + ans(b"", 0, flags=0x8380)
        + tcp(b"".join(rr(16, 120, bytes([60]) + b"x" * 60) for _ in range(12)), 12) + repeat() + repeat(flags=1),
    "nxdomain-soa": bytes([0x00, 5]) + q(query("nope.example.test", edns=512))
        + ans(rr(6, 900, name("ns.example.test") + name("admin.example.test") + struct.pack(">IIIII", 1, 7200, 900, 1209600, 300),
                 owner=b"\xc0\x11"), 0, 1, flags=0x8183) + repeat() + time(400_000) + repeat(),
    "servfail": bytes([0x00, 6]) + q(query("broken.corp.example")) + ans(b"", 0, flags=0x8182) + repeat() + time(3_000) + repeat(),
    "serve-stale": bytes([0x20, 7]) + q(query("api.svc.cluster.local")) + ans(rr(1, 1, bytes([10, 0, 0, 1])), 1)
        + time(5_000) + repeat() + time(1_100) + time(1_100) + time(1_100) + repeat(),
    "malformed": bytes([0x00, 8]) + q(query("x.test", flags=0x2800)) + q(query("x.test", edns=1232)[:-3])
        + q(query("x.test", qtype=252)) + q(b"\x12\x34\x01\x00\x00\x02" + b"\0" * 6) + q(query("x.test"), flags=2),
    "coalesce": bytes([0x00, 9]) + q(query("same.example.test")) + repeat() + repeat(mask=0xf0, flags=1)
        + ans(rr(28, 600, bytes(16)), 1),
    "reload": bytes([0x00, 10]) + q(query("www.example.test", edns=1232)) + reload(1) + q(query("svc.cluster.local"))
        + ans(A, 1, which=0x80) + ans(A, 1) + reload(0) + repeat(pick=1),
    "opt-not-last": bytes([0x00, 11]) + q(query("ns.example.test", qtype=2, edns=1232))
        # NS answer, then OPT, then two glue records: the AAAA's owner points at the A's
        # owner (offset 12 + 21 + 31 + 11 = 75), after the OPT.
        + ans(rr(2, 3600, name("a.ns.example.test")) + OPT + rr(1, 3600, bytes([192, 0, 2, 53]), owner=b"\x01a\xc0\x0c")
              + rr(28, 3600, bytes(16), owner=b"\xc0\x4b"), 1, 0, 3) + repeat(),
    "trailing-bytes": bytes([0x00, 12]) + q(query("pad.example.test", edns=1232)) + ans(A + b"\0\0\0\0", 1) + repeat(),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Corpus", "forwarder")
os.makedirs(out, exist_ok=True)
for k, v in seeds.items():
    with open(os.path.join(out, "seed-" + k + ".bin"), "wb") as f:
        f.write(v)
print(f"{len(seeds)} seeds in {out}")

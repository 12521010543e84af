import DNSWire
import FuzzSupport
import PacketCache

/// The packet cache under random sequences of insert / lookup / extendStale with random
/// names (a small pool, in random letter case), types, DO/CD flags, sizes, TTLs, stale
/// windows and clock steps, against a model of what each key last held:
///   - a hit returns exactly the bytes last inserted for that key (with the TTL rewrites
///     extendStale made), its question end, its age, and the status the model's clock
///     expects; the TTL offsets stored with it, applied, give the same bytes as a walk;
///   - while nothing was evicted, every key the model holds as fresh is found;
///   - statistics.bytes never exceeds the capacity.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCache(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let shards = 1 << Int(input.u8() % 3)
    let capacity = (32 << 10) * (1 + Int(input.u8() % 4))
    let cache = PacketCache(capacityBytes: capacity, shardCount: shards)
    var model: [ModelKey: Entry] = [:]
    var now: UInt32 = 1_000 + UInt32(input.u16())
    let out = UnsafeMutableRawPointer.allocate(byteCount: 65_536, alignment: 8)
    defer { out.deallocate() }
    var steps = 0
    while !input.isEmpty && steps < 200 {
        steps += 1
        let op = input.u8()
        let spelled = name(input.u8(), caseMask: input.u8())
        let qtype: UInt16 = [1, 28, 5, 16, 33, 15, 6, 12][Int(op >> 4) & 7]
        let flags = op >> 7 == 1 ? input.u8() & 3 : 0
        let key = ModelKey(name: spelled.map(DNSName.lower), qtype: qtype, flags: flags)
        switch op & 0x0f {
        case 0, 1, 2, 3:
            // insert: a message whose question is the key, then records (ageable or garbage).
            let ttl = UInt32(input.u16()) % 4_000
            let stale = op & 2 != 0 ? UInt32(input.u8()) * 16 : 0
            let message = answer(question: spelled, qtype: qtype, &input)
            let questionEnd = Header.size + spelled.count + 4
            let stored = withExactBuffer(message) { p, count in
                spelled.withUnsafeBytes { nm -> Bool in
                    let k = CacheKey(name: nm.baseAddress!, nameLength: nm.count, qtype: qtype, qclass: 1, flags: flags)
                    return cache.insert(k, message: p, length: count, questionEnd: questionEnd, ttl: ttl, staleWindow: stale, now: now)
                }
            }
            if stored {
                model[key] = Entry(message: message, questionEnd: questionEnd, inserted: now,
                                   expires: now &+ ttl, staleUntil: now &+ ttl &+ stale, evictionsAtInsert: cache.statistics.evictions)
            }
            // Refused (too big for the shard): the old entry, if any, stays as it was.
        case 4, 5, 6, 7, 8, 9:
            let allowStale = op & 1 != 0
            let hit = spelled.withUnsafeBytes { nm -> CacheHit in
                let k = CacheKey(name: nm.baseAddress!, nameLength: nm.count, qtype: qtype, qclass: 1, flags: flags)
                return cache.lookup(k, now: now, allowStale: allowStale, into: out, capacity: 65_536)
            }
            check(hit, key: key, model: &model, now: now, allowStale: allowStale, out: out, evictions: cache.statistics.evictions)
        case 10, 11:
            let ttl = UInt32(input.u8()) + 1
            spelled.withUnsafeBytes { nm in
                let k = CacheKey(name: nm.baseAddress!, nameLength: nm.count, qtype: qtype, qclass: 1, flags: flags)
                cache.extendStale(k, now: now, ttl: ttl)
            }
            if var e = model[key] {
                // Same rewrite the cache does, on the model's copy.
                e.message = withExactBuffer(e.message) { p, count in
                    ResponseParser.ageTTLs(p, count: count, questionEnd: e.questionEnd, elapsed: 0, override: ttl)
                    return Array(UnsafeRawBufferPointer(start: p, count: count))
                }
                e.inserted = now
                e.expires = now &+ ttl
                e.staleUntil = max(e.staleUntil, now &+ ttl)
                model[key] = e
            }
        default:
            now &+= UInt32(input.u16() % 2_000)
        }
        let st = cache.statistics
        fuzzCheck(st.bytes <= cache.capacityBytes && st.bytes >= 0 && st.entries >= 0,
                  "statistics: \(st.bytes) bytes, \(st.entries) entries, capacity \(cache.capacityBytes)")
    }
    return 0
}

struct ModelKey: Hashable {
    let name: [UInt8]
    let qtype: UInt16
    let flags: UInt8
}

struct Entry {
    var message: [UInt8]
    var questionEnd: Int
    var inserted: UInt32
    var expires: UInt32
    var staleUntil: UInt32
    var evictionsAtInsert: Int
}

let pool = ["a.test", "b.test", "www.example.test", "web.prod.svc.cluster.local", "x", ".",
            "a-very-long-label-to-make-the-name-longer-than-eight-bytes.example.test", "10.0.96.10.in-addr.arpa"]
    .map { try! DNSName.wire(fromText: $0) }

/// A name from the pool with some of its letters upper-cased.
func name(_ pick: UInt8, caseMask: UInt8) -> [UInt8] {
    var n = pool[Int(pick) % pool.count]
    var k = 0
    for i in n.indices where n[i] >= 0x61 && n[i] <= 0x7a {
        if caseMask & (1 << (k & 7)) != 0 { n[i] ^= 0x20 }
        k += 1
    }
    return n
}

/// A canonical answer (ID 0, no OPT) for the question, with records from the input: well
/// formed ones (owner compressed to the question) or raw bytes with random counts.
func answer(question: [UInt8], qtype: UInt16, _ input: inout FuzzInput) -> [UInt8] {
    let shape = input.u8()
    var m: [UInt8] = [0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]
    m += question + [UInt8(qtype >> 8), UInt8(qtype & 0xff), 0, 1]
    if shape & 0x80 != 0 {
        m[7] = shape & 7; m[9] = (shape >> 3) & 3; m[11] = (shape >> 5) & 1
        m += input.chunk(max: 2_000)
        return m
    }
    let records = Int(shape & 0x3f)
    for _ in 0..<records {
        let ttl = input.u32()
        let rdlen = Int(input.u8()) * (shape & 0x40 != 0 ? 4 : 1)
        m += [0xc0, 12, UInt8(qtype >> 8), UInt8(qtype & 0xff), 0, 1]
        m += [UInt8(ttl >> 24), UInt8(truncatingIfNeeded: ttl >> 16), UInt8(truncatingIfNeeded: ttl >> 8), UInt8(truncatingIfNeeded: ttl)]
        m += [UInt8(rdlen >> 8), UInt8(rdlen & 0xff)] + [UInt8](repeating: UInt8(truncatingIfNeeded: ttl), count: rdlen)
    }
    m[6] = UInt8(records >> 8); m[7] = UInt8(records & 0xff)
    return m
}

func check(_ hit: CacheHit, key: ModelKey, model: inout [ModelKey: Entry], now: UInt32, allowStale: Bool,
           out: UnsafeMutableRawPointer, evictions: Int) {
    guard let e = model[key] else {
        fuzzCheck(hit.status == .miss, "hit for a key never inserted: \(key)")
        return
    }
    let expected: CacheStatus = now < e.expires ? .fresh : (allowStale && now < e.staleUntil ? .stale : .miss)
    if hit.status == .miss {
        // Only eviction may lose an entry.
        fuzzCheck(expected == .miss || evictions > e.evictionsAtInsert,
                  "entry lost without eviction: \(key), expected \(expected)")
        return
    }
    fuzzCheck(hit.status == expected, "status \(hit.status), model expects \(expected) for \(key) at \(now)")
    let got = Array(UnsafeRawBufferPointer(start: out, count: hit.length))
    fuzzCheck(got == e.message, "hit returned other bytes for \(key): \(hexString(got)) vs \(hexString(e.message))")
    fuzzCheck(hit.questionEnd == e.questionEnd, "questionEnd \(hit.questionEnd) vs \(e.questionEnd)")
    fuzzCheck(hit.age == now &- e.inserted, "age \(hit.age) vs \(now &- e.inserted)")
    // The stored TTL offsets: applying them must age exactly what a walk ages.
    if hit.ttlCount >= 0 {
        let elapsed = now &- e.inserted
        var fast = got
        for k in 0..<hit.ttlCount {
            let at = Int(out.loadUnaligned(fromByteOffset: hit.length + 2 * k, as: UInt16.self))
            fuzzCheck(at >= hit.questionEnd && at + 4 <= hit.length, "TTL offset \(at) outside the answer")
            let ttl = UInt32(u16(fast, at)) << 16 | UInt32(u16(fast, at + 2))
            let v = ttl > elapsed ? ttl - elapsed : 0
            fast[at] = UInt8(v >> 24); fast[at + 1] = UInt8(truncatingIfNeeded: v >> 16)
            fast[at + 2] = UInt8(truncatingIfNeeded: v >> 8); fast[at + 3] = UInt8(truncatingIfNeeded: v)
        }
        let walked = withExactBuffer(got) { p, count in
            ResponseParser.ageTTLs(p, count: count, questionEnd: hit.questionEnd, elapsed: elapsed)
            return Array(UnsafeRawBufferPointer(start: p, count: count))
        }
        fuzzCheck(fast == walked, "TTL offsets age differently from a walk: \(hexString(fast)) vs \(hexString(walked))")
    }
}

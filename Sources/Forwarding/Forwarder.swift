import DNSWire
import NetAddress
import PacketCache

/// One worker's forwarding state machine: cache lookups, single-flight coalescing of
/// identical misses, upstream attempts with failover, timeouts, TCP fallback and
/// serve-stale. It performs no I/O and reads no clock: the event loop passes in the time
/// and a `ForwarderIO`, and replay tests drive it the same way with scripted packets.
///
/// All per-query state lives in fixed tables allocated once (`maxPending` in-flight
/// upstream queries, `maxWaiters` waiting clients), so the query path allocates nothing.
public final class Forwarder {
    /// The plan new queries use. Queries in flight keep the plan they started with (see
    /// `install`), so a reload never sends half a query's retries to a different server list.
    public private(set) var plan: ForwardingPlan
    /// Per-plan server state; slots stay until the last query using them finishes.
    @usableFromInline var states: [UpstreamHealth?]
    @usableFromInline var currentSlot = 0
    public let cache: PacketCache
    /// The plan's hot parts, held without reference counting for the query path; `plan`
    /// keeps them alive.
    /// (`Unmanaged` + `_withUnsafeGuaranteedRef`: unlike `unowned(unsafe)`, reading these
    /// never emits a retain/release pair, measured with callgrind.)
    @usableFromInline let cacheRef: Unmanaged<PacketCache>
    @usableFromInline var router: Unmanaged<ZoneRouter>
    @usableFromInline var access: Unmanaged<AccessList>
    @usableFromInline var maxUDPSize: UInt16
    @usableFromInline var prefetch: Bool
    /// nil when rate limiting is off (the default): one nil check per UDP query.
    var rateLimiter: RateLimiter?
    public var counters = ForwarderCounters()
    public let maxPending: Int
    public let maxWaiters: Int
    /// Upstream UDP sockets this worker owns; each query goes out on a random one, so the
    /// source port is as unpredictable as the ID (RFC 5452 9.2).
    public let upstreamSockets: Int
    @usableFromInline var random: FastRandom

    @usableFromInline struct Pending {
        var inUse = false
        var generation: UInt32 = 0
        var hash: UInt64 = 0
        var qtype: UInt16 = 0
        var qclass: UInt16 = 0
        var keyFlags: UInt8 = 0
        var overTCP = false
        var staleAvailable = false
        var lastWasError = false
        var nameLength: Int32 = 0
        var group: Int32 = 0
        var planSlot: Int32 = 0
        var sentAt: UInt64 = 0
        var probe = false
        var server: Int32 = 0
        var serverPos: Int32 = 0
        var errors: Int32 = 0
        var socket: Int32 = -1
        var upstreamID: UInt16 = 0
        var idRegistered = false
        var timed = false
        var deadline: UInt64 = 0
        var giveUpAt: UInt64 = 0
        var prev: Int32 = -1
        var next: Int32 = -1
        var flightNext: Int32 = -1
        var idNext: Int32 = -1
        var firstWaiter: Int32 = -1
        var waiterCount: Int32 = 0
    }

    @usableFromInline struct Waiter {
        var client = ClientHandle()
        var id: UInt16 = 0
        var flags: UInt16 = 0
        var udpLimit: UInt16 = 512
        var hasEDNS = false
        var dnssecOK = false
        var next: Int32 = -1
    }

    @usableFromInline let pending: UnsafeMutablePointer<Pending>
    @usableFromInline let pendingNames: UnsafeMutableRawPointer      // 256 bytes per slot, lower-cased
    @usableFromInline let waiters: UnsafeMutablePointer<Waiter>
    @usableFromInline let waiterNames: UnsafeMutableRawPointer       // 256 bytes per waiter, client spelling
    @usableFromInline var freePending: Int32 = -1
    @usableFromInline var freeWaiters: Int32 = -1
    @usableFromInline var pendingInUse = 0
    /// Timeout list, oldest deadline first: every attempt waits the same time, so
    /// appending keeps it sorted and expiry is O(1) per query.
    @usableFromInline var timeoutHead: Int32 = -1
    @usableFromInline var timeoutTail: Int32 = -1
    /// Buckets of the in-flight index (by cache-key hash) and the upstream-ID index.
    @usableFromInline let flightBuckets: UnsafeMutablePointer<Int32>
    @usableFromInline let idBuckets: UnsafeMutablePointer<Int32>
    @usableFromInline let bucketMask: Int
    /// Where answers are assembled before `reply`; large enough for any TCP message.
    @usableFromInline let scratch: UnsafeMutableRawPointer
    /// Answers sent, by rcode (low 4 bits), for metrics.
    public let rcodes = UnsafeMutablePointer<UInt64>.allocate(capacity: 16)
    @usableFromInline static let scratchSize = 65_535 + 512
    /// Clients coalesced onto one upstream query at most; beyond that, a new query is sent.
    @usableFromInline static let maxWaitersPerQuery: Int32 = 512

    public init(plan: ForwardingPlan, cache: PacketCache, random: FastRandom,
                maxPending: Int = 4096, maxWaiters: Int = 16384, upstreamSockets: Int = 32) {
        self.plan = plan
        self.states = [UpstreamHealth(plan: plan)]
        self.cache = cache
        self.cacheRef = Unmanaged.passUnretained(cache)
        self.router = Unmanaged.passUnretained(plan.router)
        self.access = Unmanaged.passUnretained(plan.access)
        self.maxUDPSize = plan.maxUDPSize
        self.prefetch = plan.cache.prefetch
        self.rateLimiter = plan.rateLimit.queriesPerSecond > 0 ? RateLimiter(plan.rateLimit) : nil
        self.random = random
        self.maxPending = maxPending
        self.maxWaiters = maxWaiters
        self.upstreamSockets = max(1, upstreamSockets)
        pending = .allocate(capacity: maxPending)
        pending.initialize(repeating: Pending(), count: maxPending)
        pendingNames = .allocate(byteCount: maxPending * 256, alignment: 8)
        waiters = .allocate(capacity: maxWaiters)
        waiters.initialize(repeating: Waiter(), count: maxWaiters)
        waiterNames = .allocate(byteCount: maxWaiters * 256, alignment: 8)
        var buckets = 1
        while buckets < maxPending * 2 { buckets <<= 1 }
        bucketMask = buckets - 1
        flightBuckets = .allocate(capacity: buckets)
        flightBuckets.initialize(repeating: -1, count: buckets)
        idBuckets = .allocate(capacity: buckets)
        idBuckets.initialize(repeating: -1, count: buckets)
        scratch = .allocate(byteCount: Forwarder.scratchSize, alignment: 8)
        for i in stride(from: maxPending - 1, through: 0, by: -1) { pending[i].next = freePending; freePending = Int32(i) }
        for i in stride(from: maxWaiters - 1, through: 0, by: -1) { waiters[i].next = freeWaiters; freeWaiters = Int32(i) }
        rcodes.initialize(repeating: 0, count: 16)
    }

    deinit {
        pending.deinitialize(count: maxPending); pending.deallocate()
        waiters.deinitialize(count: maxWaiters); waiters.deallocate()
        pendingNames.deallocate(); waiterNames.deallocate()
        flightBuckets.deallocate(); idBuckets.deallocate(); scratch.deallocate(); rcodes.deallocate()
    }

    public var inFlight: Int { pendingInUse }

    /// Server health and statistics for the current plan.
    public var health: UpstreamHealth { states[currentSlot]! }

    /// Switches new queries to `newPlan` (a reload). The cache is untouched; queries in
    /// flight finish against the plan and servers they started with.
    public func install(_ newPlan: ForwardingPlan) {
        let state = UpstreamHealth(plan: newPlan)
        if let free = states.indices.first(where: { $0 != currentSlot && (states[$0] == nil || states[$0]!.users == 0) }) {
            states[free] = state
            currentSlot = free
        } else {
            states.append(state)
            currentSlot = states.count - 1
        }
        for k in states.indices where k != currentSlot && states[k]?.users == 0 { states[k] = nil }
        plan = newPlan
        router = Unmanaged.passUnretained(newPlan.router)
        access = Unmanaged.passUnretained(newPlan.access)
        maxUDPSize = newPlan.maxUDPSize
        prefetch = newPlan.cache.prefetch
        rateLimiter = newPlan.rateLimit.queriesPerSecond > 0 ? RateLimiter(newPlan.rateLimit) : nil
    }

    /// The state (plan and server health) an in-flight query belongs to.
    func state(_ i: Int) -> UpstreamHealth { states[Int(pending[i].planSlot)]! }

    /// Milliseconds until the earliest deadline, for the loop's timer; nil when idle.
    public func nextDeadline() -> UInt64? {
        timeoutHead >= 0 ? pending[Int(timeoutHead)].deadline : nil
    }

    @inline(__always)
    static func seconds(_ ms: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ms / 1000) }

    // MARK: - Client queries

    /// Handles one query from a client. `p` may be modified (it is the loop's receive buffer).
    public func handleQuery<IO: ForwarderIO>(_ p: UnsafeMutableRawPointer, count: Int, client: ClientHandle,
                                             source: IPAddress, now: UInt64, io: inout IO) {
        let q = QueryParser.parse(p, count: count)
        if client.transport == .udp { counters.queriesUDP &+= 1 } else { counters.queriesTCP &+= 1 }
        switch q.verdict {
        case .query: break
        case .drop: counters.dropped &+= 1; return
        case .formErr: return answerError(p, q, .formErr, client, &io)
        case .notImp: return answerError(p, q, .notImp, client, &io)
        case .badVers: return answerError(p, q, .badVers, client, &io)
        case .refused: return answerError(p, q, .refused, client, &io)
        }
        guard access._withUnsafeGuaranteedRef({ $0.allows(source) }) else { return answerError(p, q, .refused, client, &io) }
        if client.transport == .udp {
            if let limiter = rateLimiter {
                switch limiter.check(source, nowMs: now) {
                case .pass: break
                case .drop: counters.rateLimited &+= 1; return
                case .slip: counters.rateLimited &+= 1; return answerTruncated(p, q, client, &io)
                }
            }
            // ANY over UDP is the classic amplification query: answer with TC=1 so a real
            // client asks again over TCP (RFC 8482 allows a minimal answer).
            if q.qtype == 255 { return answerTruncated(p, q, client, &io) }
        }
        // The cache key does not depend on the zone: route only when upstream is needed (a
        // miss or a prefetch), which keeps the suffix walk off the hit path.
        let keyFlags = (q.dnssecOK ? CacheKey.dnssecOK : 0) | (q.checkingDisabled ? CacheKey.checkingDisabled : 0)
        let key = CacheKey(name: p + Header.size, nameLength: q.nameLength, qtype: q.qtype, qclass: q.qclass, flags: keyFlags)
        let nowS = Forwarder.seconds(now)
        let scratch = self.scratch
        let hit = cacheRef._withUnsafeGuaranteedRef {
            $0.lookup(key, now: nowS, allowStale: true, into: scratch, capacity: Forwarder.scratchSize)
        }
        let udpLimit = client.transport == .tcp ? UInt16.max
            : (q.hasEDNS ? min(q.udpSize, maxUDPSize) : 512)
        if hit.status == .fresh {
            counters.cacheHits &+= 1
            let n = finishAnswer(length: hit.length, questionEnd: hit.questionEnd, clientID: q.id, clientFlags: q.flags,
                                 clientName: p + Header.size, nameLength: q.nameLength, hasEDNS: q.hasEDNS,
                                 dnssecOK: q.dnssecOK, udpLimit: udpLimit, age: hit.age, ttlOverride: nil,
                                 ttlCount: hit.ttlCount)
            emit(client, scratch, n, &io, origin: .cache)
            if hit.wantsRefresh && prefetch {
                counters.prefetches &+= 1
                if findFlight(key) < 0 {
                    let group = router._withUnsafeGuaranteedRef { $0.route(name: p + Header.size, length: q.nameLength, labelCount: q.labelCount) }
                    _ = startQuery(key, group: group, now: now, staleAvailable: true, io: &io)
                }
            }
            return
        }
        counters.cacheMisses &+= 1
        let group = router._withUnsafeGuaranteedRef { $0.route(name: p + Header.size, length: q.nameLength, labelCount: q.labelCount) }
        var slot = findFlight(key)
        if slot >= 0 && pending[Int(slot)].waiterCount < Forwarder.maxWaitersPerQuery {
            counters.coalesced &+= 1
        } else {
            slot = startQuery(key, group: group, now: now, staleAvailable: hit.status == .stale, io: &io)
            if slot < 0 {
                counters.overloaded &+= 1
                return answerError(p, q, .servFail, client, &io)
            }
        }
        guard addWaiter(slot: slot, client: client, q: q, name: p + Header.size, udpLimit: udpLimit) else {
            counters.overloaded &+= 1
            return answerError(p, q, .servFail, client, &io)
        }
    }

    func answerError<IO: ForwarderIO>(_ p: UnsafeMutableRawPointer, _ q: QueryInfo, _ rcode: RCode,
                                      _ client: ClientHandle, _ io: inout IO) {
        switch rcode {
        case .formErr: counters.formerr &+= 1
        case .refused: counters.refused &+= 1
        case .servFail: counters.servfail &+= 1
        default: break
        }
        let n = ResponseWriter.error(query: p, info: q, rcode: rcode, into: scratch, maxUDPSize: maxUDPSize)
        emit(client, scratch, n, &io)
    }

    @inline(__always)
    func emit<IO: ForwarderIO>(_ client: ClientHandle, _ bytes: UnsafeMutableRawPointer, _ n: Int, _ io: inout IO,
                               origin: AnswerOrigin = .local) {
        rcodes[Int(Header.flags(bytes) & Header.rcodeMask)] &+= 1
        io.reply(client, bytes, n, origin: origin)
    }

    /// An empty NOERROR answer with TC=1: header and question only.
    func answerTruncated<IO: ForwarderIO>(_ p: UnsafeMutableRawPointer, _ q: QueryInfo, _ client: ClientHandle, _ io: inout IO) {
        let n = ResponseWriter.error(query: p, info: q, rcode: .noError, into: scratch, maxUDPSize: maxUDPSize)
        Wire.put16(scratch, Header.flagsOffset, Header.flags(scratch) | Header.tc)
        counters.truncated &+= 1
        emit(client, scratch, n, &io)
    }

    func addWaiter(slot: Int32, client: ClientHandle, q: QueryInfo, name: UnsafeRawPointer, udpLimit: UInt16) -> Bool {
        let w = freeWaiters
        guard w >= 0 else { return false }
        freeWaiters = waiters[Int(w)].next
        waiters[Int(w)] = Waiter(client: client, id: q.id, flags: q.flags, udpLimit: udpLimit,
                                 hasEDNS: q.hasEDNS, dnssecOK: q.dnssecOK, next: pending[Int(slot)].firstWaiter)
        (waiterNames + Int(w) * 256).copyMemory(from: name, byteCount: q.nameLength)
        pending[Int(slot)].firstWaiter = w
        pending[Int(slot)].waiterCount += 1
        return true
    }

    /// Turns a canonical answer in `scratch` into the client's answer: its ID, its spelling
    /// of the name, flags it can accept, aged TTLs, an OPT record if it sent one, and TC
    /// when it does not fit. Returns the length.
    func finishAnswer(length: Int, questionEnd: Int, clientID: UInt16, clientFlags: UInt16,
                      clientName: UnsafeRawPointer, nameLength: Int, hasEDNS: Bool, dnssecOK: Bool,
                      udpLimit: UInt16, age: UInt32, ttlOverride: UInt32?, ttlCount: Int) -> Int {
        let m = scratch
        Wire.put16(m, Header.idOffset, clientID)
        (m + Header.size).copyMemory(from: clientName, byteCount: nameLength)
        var flags = Header.flags(m)
        // nginx drops answers with AD, CD or Z set: AD only for clients that asked for
        // DNSSEC (DO) or AD, CD mirrors the query, Z is always clear.
        flags &= ~(Header.z | Header.cd | Header.aa)
        if !dnssecOK && clientFlags & Header.ad == 0 { flags &= ~Header.ad }
        flags |= clientFlags & (Header.cd | Header.rd)
        flags |= Header.ra | Header.qr
        Wire.put16(m, Header.flagsOffset, flags)
        if age > 0 || ttlOverride != nil {
            if ttlCount >= 0 {
                // The cache stored where each TTL is: no walk over the records.
                let offsets = UnsafeRawPointer(m + length)
                var k = 0
                while k < ttlCount {
                    let at = Int(offsets.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
                    let ttl = Wire.u32(m, at)
                    Wire.put32(m, at, ttlOverride ?? (ttl > age ? ttl - age : 0))
                    k += 1
                }
            } else {
                ResponseParser.ageTTLs(m, count: length, questionEnd: questionEnd, elapsed: age, override: ttlOverride)
            }
        }
        var n = length
        let optRoom = hasEDNS ? ResponseWriter.optSize : 0
        if n + optRoom > Int(udpLimit) {
            counters.truncated &+= 1
            n = ResponseWriter.truncate(m, questionEnd: questionEnd)
        }
        if hasEDNS { n = ResponseWriter.appendOPT(m, at: n, udpSize: maxUDPSize, dnssecOK: dnssecOK) }
        return n
    }

    // MARK: - Upstream queries

    func findFlight(_ key: CacheKey) -> Int32 {
        var s = flightBuckets[Int(truncatingIfNeeded: key.hash) & bucketMask]
        while s >= 0 {
            let e = pending[Int(s)]
            if e.hash == key.hash && e.qtype == key.qtype && e.qclass == key.qclass && e.keyFlags == key.flags
                && Int(e.nameLength) == key.nameLength
                && DNSName.equalIgnoringCase(pendingNames + Int(s) * 256, key.name, length: key.nameLength) {
                return s
            }
            s = e.flightNext
        }
        return -1
    }

    /// Allocates an in-flight query for `key` and sends its first attempt. -1 when full.
    func startQuery<IO: ForwarderIO>(_ key: CacheKey, group: Int, now: UInt64, staleAvailable: Bool,
                                     probeServer: Int = -1, io: inout IO) -> Int32 {
        let s = freePending
        guard s >= 0 else { return -1 }
        let i = Int(s)
        freePending = pending[i].next
        pendingInUse += 1
        let st = states[currentSlot]!
        let g = st.plan.groups[group]
        let gen = pending[i].generation &+ 1
        pending[i] = Pending()
        pending[i].inUse = true
        pending[i].generation = gen
        pending[i].hash = key.hash
        pending[i].qtype = key.qtype
        pending[i].qclass = key.qclass
        pending[i].keyFlags = key.flags
        pending[i].nameLength = Int32(key.nameLength)
        pending[i].group = Int32(group)
        pending[i].planSlot = Int32(currentSlot)
        st.users += 1
        st.groupQueries[group] &+= 1
        let pos = st.firstChoice(g)
        pending[i].serverPos = Int32(pos)
        pending[i].server = Int32(g.servers.isEmpty ? -1 : g.servers[pos])
        pending[i].staleAvailable = staleAvailable
        pending[i].giveUpAt = now + st.plan.queryTimeoutMs
        DNSName.copyLowercased(from: key.name, to: pendingNames + i * 256, length: key.nameLength)
        if probeServer >= 0 {
            // A probe is pinned to one server, gets one attempt and joins no flight.
            pending[i].probe = true
            pending[i].server = Int32(probeServer)
            pending[i].giveUpAt = now + st.plan.upstreamTimeoutMs
            pending[i].flightNext = -1
            sendAttempt(s, now: now, io: &io)
            return s
        }
        let b = Int(truncatingIfNeeded: key.hash) & bucketMask
        pending[i].flightNext = flightBuckets[b]
        flightBuckets[b] = s
        if g.servers.isEmpty {
            pending[i].deadline = now
            appendTimeout(s)
        } else {
            sendAttempt(s, now: now, io: &io)
        }
        return s
    }

    /// Writes the upstream query for slot `s` into `scratch`: a fresh random ID, RD, the
    /// client's CD, the lower-cased question and our own OPT (DO copied from the key).
    func buildUpstreamQuery(_ s: Int, id: UInt16) -> Int {
        let e = pending[s]
        let m = scratch
        Wire.put16(m, Header.idOffset, id)
        Wire.put16(m, Header.flagsOffset, Header.rd | (e.keyFlags & CacheKey.checkingDisabled != 0 ? Header.cd : 0))
        Wire.put16(m, Header.qdcountOffset, 1)
        Wire.put16(m, Header.ancountOffset, 0)
        Wire.put16(m, Header.nscountOffset, 0)
        Wire.put16(m, Header.arcountOffset, 0)
        let nl = Int(e.nameLength)
        (m + Header.size).copyMemory(from: pendingNames + s * 256, byteCount: nl)
        Wire.put16(m, Header.size + nl, e.qtype)
        Wire.put16(m, Header.size + nl + 2, e.qclass)
        return ResponseWriter.appendOPT(m, at: Header.size + nl + 4, udpSize: state(s).plan.upstreamUDPSize,
                                        dnssecOK: e.keyFlags & CacheKey.dnssecOK != 0)
    }

    func sendAttempt<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO) {
        let i = Int(s)
        // One random socket per round of sends (see `endUpstreamRound`).
        if roundSocket < 0 { roundSocket = Int32(truncatingIfNeeded: random.next() % UInt64(upstreamSockets)) }
        let socket = roundSocket
        var id: UInt16 = 0
        // Pick an ID not already waiting on this socket (a handful of tries at most).
        repeat { id = UInt16(truncatingIfNeeded: random.next()) } while findID(socket: socket, id: id) >= 0
        pending[i].socket = socket
        pending[i].upstreamID = id
        pending[i].overTCP = false
        registerID(s)
        let st = state(i)
        pending[i].deadline = min(now + st.plan.upstreamTimeoutMs, pending[i].giveUpAt)
        pending[i].sentAt = now
        appendTimeout(s)
        let n = buildUpstreamQuery(i, id: id)
        counters.upstreamQueries &+= 1
        let server = Int(pending[i].server)
        st.queries[server] &+= 1
        io.sendUDP(socket: Int(socket), to: st.plan.servers[server], scratch, n)
    }

    /// The upstream socket of the current round of sends, or -1 before the first send.
    @usableFromInline var roundSocket: Int32 = -1

    /// The event loop has sent this round's upstream queries (one `sendmmsg` per socket).
    /// The next round draws a new random socket. Within a round every query shares one
    /// socket, so a batch of 32 misses costs one `sendmmsg` instead of one per socket drawn,
    /// and their answers come back to one socket, read by one `recvmmsg`. An off-path
    /// attacker still has to guess the port (1 in `upstream-sockets`) and the ID of each query.
    @inlinable
    public func endUpstreamRound() { roundSocket = -1 }

    /// The same query again, to the same server, with the same ID from the same socket
    /// (RFC 1035 4.2.1's retransmission), so whichever copy's answer comes first is taken.
    func retransmit<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO) {
        let i = Int(s)
        let st = state(i)
        pending[i].deadline = min(now + st.plan.upstreamTimeoutMs, pending[i].giveUpAt)
        pending[i].sentAt = now
        appendTimeout(s)
        let n = buildUpstreamQuery(i, id: pending[i].upstreamID)
        counters.upstreamQueries &+= 1
        counters.retransmissions &+= 1
        let server = Int(pending[i].server)
        st.queries[server] &+= 1
        io.sendUDP(socket: Int(pending[i].socket), to: st.plan.servers[server], scratch, n)
    }

    func idBucket(socket: Int32, id: UInt16) -> Int {
        Int((UInt32(bitPattern: socket) &* 0x9E37_79B1) ^ UInt32(id) &* 0x85EB_CA6B) & bucketMask
    }

    func findID(socket: Int32, id: UInt16) -> Int32 {
        var s = idBuckets[idBucket(socket: socket, id: id)]
        while s >= 0 {
            if pending[Int(s)].socket == socket && pending[Int(s)].upstreamID == id { return s }
            s = pending[Int(s)].idNext
        }
        return -1
    }

    func registerID(_ s: Int32) {
        let b = idBucket(socket: pending[Int(s)].socket, id: pending[Int(s)].upstreamID)
        pending[Int(s)].idNext = idBuckets[b]
        idBuckets[b] = s
        pending[Int(s)].idRegistered = true
    }

    func unregisterID(_ s: Int32) {
        guard pending[Int(s)].idRegistered else { return }
        pending[Int(s)].idRegistered = false
        let b = idBucket(socket: pending[Int(s)].socket, id: pending[Int(s)].upstreamID)
        if idBuckets[b] == s { idBuckets[b] = pending[Int(s)].idNext; return }
        var p = idBuckets[b]
        while p >= 0 {
            if pending[Int(p)].idNext == s { pending[Int(p)].idNext = pending[Int(s)].idNext; return }
            p = pending[Int(p)].idNext
        }
    }

    func appendTimeout(_ s: Int32) {
        pending[Int(s)].timed = true
        pending[Int(s)].prev = timeoutTail
        pending[Int(s)].next = -1
        if timeoutTail >= 0 { pending[Int(timeoutTail)].next = s } else { timeoutHead = s }
        timeoutTail = s
    }

    func removeTimeout(_ s: Int32) {
        guard pending[Int(s)].timed else { return }
        pending[Int(s)].timed = false
        let e = pending[Int(s)]
        if e.prev >= 0 { pending[Int(e.prev)].next = e.next } else { timeoutHead = e.next }
        if e.next >= 0 { pending[Int(e.next)].prev = e.prev } else { timeoutTail = e.prev }
        pending[Int(s)].prev = -1
        pending[Int(s)].next = -1
    }

    func release(_ s: Int32) {
        let i = Int(s)
        unregisterID(s)
        removeTimeout(s)
        let b = Int(truncatingIfNeeded: pending[i].hash) & bucketMask
        if pending[i].probe {
            // Probes never joined the flight index.
        } else if flightBuckets[b] == s {
            flightBuckets[b] = pending[i].flightNext
        } else {
            var p = flightBuckets[b]
            while p >= 0 {
                if pending[Int(p)].flightNext == s { pending[Int(p)].flightNext = pending[i].flightNext; break }
                p = pending[Int(p)].flightNext
            }
        }
        var w = pending[i].firstWaiter
        while w >= 0 {
            let n = waiters[Int(w)].next
            waiters[Int(w)].next = freeWaiters
            freeWaiters = w
            w = n
        }
        let slot = Int(pending[i].planSlot)
        if let st = states[slot] {
            st.users -= 1
            if st.users == 0 && slot != currentSlot { states[slot] = nil }
        }
        pending[i].inUse = false
        pending[i].probe = false
        pending[i].generation &+= 1
        pending[i].firstWaiter = -1
        pending[i].next = freePending
        freePending = s
        pendingInUse -= 1
    }

    // MARK: - Upstream answers

    /// An answer arrived on upstream UDP socket `socket` from `source`:`port`. Accepted only
    /// if it matches an in-flight query on that socket by ID, comes from the server that
    /// query was sent to, and repeats its question; anything else is counted and ignored
    /// (the real answer may still come).
    public func handleUDPResponse<IO: ForwarderIO>(_ p: UnsafeMutableRawPointer, count: Int, socket: Int,
                                                   source: IPAddress, port: UInt16, now: UInt64, io: inout IO) {
        guard count >= Header.size else { counters.mismatched &+= 1; return }
        let s = findID(socket: Int32(socket), id: Header.id(p))
        guard s >= 0 else { counters.mismatched &+= 1; return }
        let server = state(Int(s)).plan.servers[Int(pending[Int(s)].server)]
        guard server.address == source && server.port == port else { counters.mismatched &+= 1; return }
        handleResponse(s, p, count: count, now: now, io: &io)
    }

    /// An ICMP error came back for the query with `id` sent on upstream socket `socket` to
    /// `server`:`port` (nothing listens there, or a firewall such as kube-proxy for a Service
    /// without endpoints rejected it). That attempt failed now: the next server is tried, or
    /// the clients get a stale answer or SERVFAIL, without waiting for `upstream-timeout`.
    /// Only the exact (socket, ID, server) of an attempt in flight counts, so a forged ICMP
    /// message can at worst fail one query whose ID it guessed.
    public func upstreamUnreachable<IO: ForwarderIO>(socket: Int, id: UInt16, server address: IPAddress, port: UInt16,
                                                     errno: Int32, now: UInt64, io: inout IO) {
        let s = findID(socket: Int32(socket), id: id)
        guard s >= 0, !pending[Int(s)].overTCP else { return }
        let st = state(Int(s))
        let si = Int(pending[Int(s)].server)
        let server = st.plan.servers[si]
        guard server.address == address && server.port == port else { return }
        counters.upstreamUnreachable &+= 1
        let wasDown = st.down[si]
        st.unreachable(si, now: now)
        if st.down[si] && !wasDown { io.event(.serverDown(server, zone: st.plan.groups[Int(pending[Int(s)].group)].name)) }
        attemptFailed(s, now: now, io: &io, error: true)
    }

    /// The answer to a query retried over TCP (after TC=1).
    public func handleTCPResponse<IO: ForwarderIO>(token: UInt64, _ p: UnsafeMutableRawPointer, count: Int,
                                                   now: UInt64, io: inout IO) {
        let s = Int32(truncatingIfNeeded: token & 0xffff_ffff)
        guard s >= 0, Int(s) < maxPending, pending[Int(s)].inUse, pending[Int(s)].overTCP,
              pending[Int(s)].generation == UInt32(truncatingIfNeeded: token >> 32),
              count >= Header.size, Header.id(p) == pending[Int(s)].upstreamID else {
            counters.mismatched &+= 1
            return
        }
        handleResponse(s, p, count: count, now: now, io: &io)
    }

    /// The TCP retry for `token` failed (connect refused, reset, closed before or in the
    /// middle of the answer, no answer in time): that server failed this query.
    public func tcpFailed<IO: ForwarderIO>(token: UInt64, now: UInt64, io: inout IO) {
        let s = Int32(truncatingIfNeeded: token & 0xffff_ffff)
        guard s >= 0, Int(s) < maxPending, pending[Int(s)].inUse, pending[Int(s)].overTCP,
              pending[Int(s)].generation == UInt32(truncatingIfNeeded: token >> 32) else { return }
        serverErred(s, now: now, io: &io)
    }

    /// The server of slot `s`'s current attempt failed it (an error rcode, a broken or
    /// truncated answer over TCP, a TCP connection that broke): count it and move on.
    func serverErred<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO) {
        counters.upstreamErrors &+= 1
        state(Int(s)).errors[Int(pending[Int(s)].server)] &+= 1
        attemptFailed(s, now: now, io: &io, error: true)
    }

    func handleResponse<IO: ForwarderIO>(_ s: Int32, _ p: UnsafeMutableRawPointer, count: Int, now: UInt64, io: inout IO) {
        let i = Int(s)
        let r = ResponseParser.parse(p, count: count)
        let e = pending[i]
        guard r.flags & Header.qr != 0, r.flags & Header.opcodeMask == 0, r.nameLength == Int(e.nameLength),
              r.qtype == e.qtype, r.qclass == e.qclass,
              r.nameLength == 0 || DNSName.equalIgnoringCase(p + Header.size, pendingNames + i * 256, length: r.nameLength)
        else {
            counters.mismatched &+= 1
            // Over TCP (our own connection, ID checked) this is the server's only answer and it
            // is broken or cut short: that server failed.
            if e.overTCP {
                return serverErred(s, now: now, io: &io)
            }
            // Over UDP it could be spoofed or a confused server. Keep waiting.
            return
        }
        let st = state(i)
        if st.down[Int(e.server)] { io.event(.serverUp(st.plan.servers[Int(e.server)], zone: st.plan.groups[Int(e.group)].name)) }
        st.answered(Int(e.server), rttMs: now >= e.sentAt ? now - e.sentAt : 0)
        if e.probe {
            // The server answered: it is up again. Probes are never cached or delivered.
            release(s)
            return
        }
        guard r.ok else {
            return serverErred(s, now: now, io: &io)
        }
        if r.truncated && e.overTCP {
            // TC over TCP cannot be fixed by asking again the same way (a server stuck in a
            // TC loop, or an answer over 64 KiB): this server failed; try the next or SERVFAIL.
            return serverErred(s, now: now, io: &io)
        }
        if r.truncated {
            // RFC 7766 5: retry the same question over TCP to the same server.
            counters.tcpFallbacks &+= 1
            unregisterID(s)
            removeTimeout(s)
            pending[i].overTCP = true
            pending[i].deadline = min(now + st.plan.upstreamTimeoutMs, pending[i].giveUpAt)
            pending[i].sentAt = now
            appendTimeout(s)
            let n = buildUpstreamQuery(i, id: e.upstreamID)
            let token = UInt64(pending[i].generation) << 32 | UInt64(UInt32(bitPattern: s))
            io.sendTCP(to: st.plan.servers[Int(e.server)], token: token, scratch, n)
            return
        }
        let rcode = r.rcode | UInt16(r.extendedRCodeHigh) << 4
        if rcode == RCode.servFail.rawValue || rcode == RCode.refused.rawValue || rcode == RCode.notImp.rawValue
            || rcode > 15 {
            return serverErred(s, now: now, io: &io)
        }
        // Canonical form for the cache and for every waiter: no OPT, ID 0.
        var n = count
        if r.optStart >= 0 { n = ResponseParser.removeAdditional(p, count: n, start: r.optStart, end: r.optEnd) }
        Wire.put16(p, Header.idOffset, 0)
        let key = CacheKey(name: pendingNames + i * 256, nameLength: Int(e.nameLength), qtype: e.qtype,
                           qclass: e.qclass, flags: e.keyFlags)
        if let ttl = cacheTTL(r, rcode: rcode, policy: st.plan.cache), !r.truncated {
            cache.insert(key, message: p, length: n, questionEnd: r.questionEnd, ttl: ttl,
                         staleWindow: st.plan.groups[Int(e.group)].staleWindow, now: Forwarder.seconds(now))
        }
        let origin = AnswerOrigin(kind: .upstream, server: st.plan.servers[Int(e.server)],
                                  latencyMs: now >= e.sentAt ? now - e.sentAt : 0)
        deliver(s, message: p, length: n, questionEnd: r.questionEnd, age: 0, ttlOverride: nil, origin: origin, io: &io)
        release(s)
    }

    /// How long an answer may be cached, or nil when it must not be (RFC 2308 for
    /// negative answers: the SOA's TTL capped by its MINIMUM).
    func cacheTTL(_ r: ResponseInfo, rcode: UInt16, policy: CachePolicy) -> UInt32? {
        let negative = rcode == RCode.nxDomain.rawValue || (rcode == 0 && r.answerCount == 0)
        if negative {
            let t = r.negativeTTL ?? policy.negativeTTLWithoutSOA
            if t == 0 { return nil }
            return min(max(t, policy.minTTL), policy.maxNegativeTTL, policy.maxTTL)
        }
        guard rcode == 0, let ttl = r.minTTL else { return nil }
        let t = min(max(ttl, policy.minTTL), policy.maxTTL)
        return t == 0 ? nil : t
    }

    /// Sends the canonical answer at `message` to every client waiting on slot `s`.
    func deliver<IO: ForwarderIO>(_ s: Int32, message: UnsafeRawPointer, length: Int, questionEnd: Int,
                                  age: UInt32, ttlOverride: UInt32?, ttlCount: Int = -1, origin: AnswerOrigin, io: inout IO) {
        var w = pending[Int(s)].firstWaiter
        let copyLength = length + (ttlCount > 0 ? 2 * ttlCount : 0)
        while w >= 0 {
            let wt = waiters[Int(w)]
            scratch.copyMemory(from: message, byteCount: copyLength)
            let n = finishAnswer(length: length, questionEnd: questionEnd, clientID: wt.id, clientFlags: wt.flags,
                                 clientName: waiterNames + Int(w) * 256, nameLength: Int(pending[Int(s)].nameLength),
                                 hasEDNS: wt.hasEDNS, dnssecOK: wt.dnssecOK, udpLimit: wt.udpLimit,
                                 age: age, ttlOverride: ttlOverride, ttlCount: ttlCount)
            emit(wt.client, scratch, n, &io, origin: origin)
            w = wt.next
        }
    }

    // MARK: - Failures and time

    /// Fires every attempt whose deadline has passed.
    public func expire<IO: ForwarderIO>(now: UInt64, io: inout IO) {
        while timeoutHead >= 0 && pending[Int(timeoutHead)].deadline <= now {
            let s = timeoutHead
            if pending[Int(s)].server >= 0 {
                counters.upstreamTimeouts &+= 1
                let st = state(Int(s))
                let server = Int(pending[Int(s)].server)
                let wasDown = st.down[server]
                st.timedOut(server, now: now)
                if st.down[server] && !wasDown {
                    io.event(.serverDown(st.plan.servers[server], zone: st.plan.groups[Int(pending[Int(s)].group)].name))
                }
            }
            attemptFailed(s, now: now, io: &io, error: false)
        }
        if now >= nextProbeScan {
            nextProbeScan = now + 250
            probeDownServers(now: now, io: &io)
        }
    }

    @usableFromInline var nextProbeScan: UInt64 = 0

    /// Sends one probe to every server of the current plan that is marked down and was
    /// not probed for `probeIntervalMs`; the first answer marks it up again.
    func probeDownServers<IO: ForwarderIO>(now: UInt64, io: inout IO) {
        let st = states[currentSlot]!
        for server in st.plan.servers.indices where st.down[server] && now >= st.lastProbe[server] + UpstreamHealth.probeIntervalMs {
            guard let g = st.plan.groups.firstIndex(where: { $0.servers.contains(server) }), freePending >= 0 else { return }
            st.lastProbe[server] = now
            let group = st.plan.groups[g]
            let name = group.probeName
            // The key's name pointer is only read by startQuery's copy.
            let s = name.withUnsafeBytes { raw -> Int32 in
                let k = CacheKey(name: raw.baseAddress!, nameLength: name.count, qtype: group.probeType, qclass: 1, flags: 0)
                return startQuery(k, group: g, now: now, staleAvailable: false, probeServer: server, io: &io)
            }
            if s < 0 { return }
            counters.probes &+= 1
        }
    }

    /// One attempt got no usable answer. Try the group's next server while time is left;
    /// after a timeout with a stale answer available, answer the clients with it now and
    /// keep resolving in the background.
    func attemptFailed<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO, error: Bool) {
        let i = Int(s)
        // A UDP attempt that merely timed out stays registered until we know whether the
        // next attempt goes to the same server: then it is a retransmission with the same
        // ID and socket, and a slow server's late answer to the first copy still counts.
        let mayRetransmit = !error && !pending[i].overTCP && pending[i].idRegistered
        if !mayRetransmit { unregisterID(s) }
        removeTimeout(s)
        pending[i].lastWasError = error
        if error { pending[i].errors += 1 }
        if pending[i].probe { return release(s) }
        let st = state(i)
        let g = st.plan.groups[Int(pending[i].group)]
        if !error && pending[i].staleAvailable && pending[i].firstWaiter >= 0 {
            if serveStale(s, now: now, io: &io) {
                // The waiters are answered; the rest of the resolution refreshes the cache.
                var w = pending[i].firstWaiter
                while w >= 0 { let n = waiters[Int(w)].next; waiters[Int(w)].next = freeWaiters; freeWaiters = w; w = n }
                pending[i].firstWaiter = -1
                pending[i].waiterCount = 0
            }
        }
        let everyServerErred = Int(pending[i].errors) >= g.servers.count
        if now < pending[i].giveUpAt && !g.servers.isEmpty && !everyServerErred {
            let pos = st.next(after: Int(pending[i].serverPos), in: g)
            if mayRetransmit && Int32(g.servers[pos]) == pending[i].server {
                pending[i].serverPos = Int32(pos)
                retransmit(s, now: now, io: &io)
                return
            }
            unregisterID(s)
            pending[i].serverPos = Int32(pos)
            pending[i].server = Int32(g.servers[pos])
            sendAttempt(s, now: now, io: &io)
            return
        }
        fail(s, now: now, io: &io)
    }

    func serveStale<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO) -> Bool {
        let i = Int(s)
        let e = pending[i]
        let st = state(i)
        guard st.plan.groups[Int(e.group)].staleWindow > 0 else { return false }
        let key = CacheKey(name: pendingNames + i * 256, nameLength: Int(e.nameLength), qtype: e.qtype,
                           qclass: e.qclass, flags: e.keyFlags)
        let nowS = Forwarder.seconds(now)
        let hit = cache.lookup(key, now: nowS, allowStale: true, into: scratch, capacity: Forwarder.scratchSize)
        guard hit.status != .miss else { return false }
        let staleTTL = st.plan.cache.staleTTL
        if hit.status == .stale {
            counters.staleServed &+= UInt64(e.waiterCount)
            cache.extendStale(key, now: nowS, ttl: staleTTL)
        }
        // Deliver from a copy so `scratch` can hold each client's version.
        let copy = scratch + Forwarder.scratchSize / 2
        let withOffsets = hit.length + max(0, 2 * hit.ttlCount)
        guard withOffsets <= Forwarder.scratchSize / 2 - 512 else { return false }
        copy.copyMemory(from: scratch, byteCount: withOffsets)
        deliver(s, message: copy, length: hit.length, questionEnd: hit.questionEnd,
                age: hit.status == .stale ? 0 : hit.age, ttlOverride: hit.status == .stale ? staleTTL : nil,
                ttlCount: hit.ttlCount, origin: AnswerOrigin(kind: hit.status == .stale ? .stale : .cache, server: nil, latencyMs: 0),
                io: &io)
        return true
    }

    /// For a cluster zone's AAAA query that failed: if the name's A answer is known, the
    /// name exists, so answer NODATA rather than SERVFAIL (nginx fails the whole lookup when
    /// either family errors). Returns true when the waiters were answered.
    func answerAAAANodata<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO) -> Bool {
        let i = Int(s)
        let e = pending[i]
        let st = state(i)
        guard e.qtype == RRType.aaaa, st.plan.cache.clusterAAAANodata, st.plan.groups[Int(e.group)].kind == .cluster else {
            return false
        }
        let key = CacheKey(name: pendingNames + i * 256, nameLength: Int(e.nameLength), qtype: RRType.a, qclass: e.qclass, flags: e.keyFlags)
        let hit = cache.lookup(key, now: Forwarder.seconds(now), allowStale: true, into: scratch, capacity: Forwarder.scratchSize)
        guard hit.status != .miss, Header.flags(scratch) & Header.rcodeMask == 0, Header.count(scratch, Header.ancountOffset) > 0 else {
            return false
        }
        let nl = Int(e.nameLength)
        var w = e.firstWaiter
        while w >= 0 {
            let wt = waiters[Int(w)]
            let m = scratch
            Wire.put16(m, Header.idOffset, wt.id)
            Wire.put16(m, Header.flagsOffset, Header.qr | Header.ra | (wt.flags & (Header.rd | Header.cd)))
            Wire.put16(m, Header.qdcountOffset, 1)
            Wire.put16(m, Header.ancountOffset, 0)
            Wire.put16(m, Header.nscountOffset, 0)
            Wire.put16(m, Header.arcountOffset, 0)
            (m + Header.size).copyMemory(from: waiterNames + Int(w) * 256, byteCount: nl)
            Wire.put16(m, Header.size + nl, e.qtype)
            Wire.put16(m, Header.size + nl + 2, e.qclass)
            var n = Header.size + nl + 4
            if wt.hasEDNS { n = ResponseWriter.appendOPT(m, at: n, udpSize: maxUDPSize, dnssecOK: wt.dnssecOK) }
            counters.synthesizedNodata &+= 1
            emit(wt.client, m, n, &io)
            w = wt.next
        }
        return true
    }

    /// Every attempt failed: stale answer if there is one, else SERVFAIL, which is also
    /// remembered for `servfailTTL` seconds (RFC 9520) so a broken zone is not hammered by
    /// every client's retries.
    func fail<IO: ForwarderIO>(_ s: Int32, now: UInt64, io: inout IO) {
        let i = Int(s)
        let servedStale = pending[i].firstWaiter >= 0 && serveStale(s, now: now, io: &io)
        if !servedStale && pending[i].firstWaiter >= 0 && answerAAAANodata(s, now: now, io: &io) { return release(s) }
        let policy = state(i).plan.cache
        // A query that began with a stale answer in the cache (a client was served it, or
        // will be on the next timeout) must not overwrite it with a SERVFAIL: the stale data
        // is what keeps the name working while its server is down.
        if !servedStale && !pending[i].staleAvailable && policy.servfailTTL > 0 {
            let e = pending[i]
            let m = scratch
            let nl = Int(e.nameLength)
            Wire.put16(m, Header.idOffset, 0)
            Wire.put16(m, Header.flagsOffset, Header.qr | Header.ra | Header.rd | RCode.servFail.rawValue)
            Wire.put16(m, Header.qdcountOffset, 1)
            Wire.put16(m, Header.ancountOffset, 0)
            Wire.put16(m, Header.nscountOffset, 0)
            Wire.put16(m, Header.arcountOffset, 0)
            (m + Header.size).copyMemory(from: pendingNames + i * 256, byteCount: nl)
            Wire.put16(m, Header.size + nl, e.qtype)
            Wire.put16(m, Header.size + nl + 2, e.qclass)
            let key = CacheKey(name: pendingNames + i * 256, nameLength: nl, qtype: e.qtype, qclass: e.qclass, flags: e.keyFlags)
            cache.insert(key, message: m, length: Header.size + nl + 4, questionEnd: Header.size + nl + 4,
                         ttl: policy.servfailTTL, staleWindow: 0, now: Forwarder.seconds(now))
        }
        if pending[i].firstWaiter >= 0 && !servedStale {
            var w = pending[i].firstWaiter
            let nl = Int(pending[i].nameLength)
            while w >= 0 {
                let wt = waiters[Int(w)]
                let m = scratch
                Wire.put16(m, Header.idOffset, wt.id)
                Wire.put16(m, Header.flagsOffset, Header.qr | Header.ra | (wt.flags & (Header.rd | Header.cd))
                           | RCode.servFail.rawValue)
                Wire.put16(m, Header.qdcountOffset, 1)
                Wire.put16(m, Header.ancountOffset, 0)
                Wire.put16(m, Header.nscountOffset, 0)
                Wire.put16(m, Header.arcountOffset, 0)
                (m + Header.size).copyMemory(from: waiterNames + Int(w) * 256, byteCount: nl)
                Wire.put16(m, Header.size + nl, pending[i].qtype)
                Wire.put16(m, Header.size + nl + 2, pending[i].qclass)
                var n = Header.size + nl + 4
                if wt.hasEDNS { n = ResponseWriter.appendOPT(m, at: n, udpSize: maxUDPSize, dnssecOK: wt.dnssecOK) }
                counters.servfail &+= 1
                emit(wt.client, m, n, &io)
                w = wt.next
            }
        }
        release(s)
    }
}

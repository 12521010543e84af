import CLibevent
import CShim
import DNSWire
import Forwarding
import Glibc
import NetAddress
import PacketCache
import Synchronization

/// Settings of the socket layer (the forwarding settings live in `ForwardingPlan`).
public struct ServerOptions: Sendable {
    public var listen: [Endpoint] = []
    public var threads: Int = 1
    public var tcpIdleTimeoutMs: Int = 10_000
    /// Per worker. When full, the connection idle the longest is closed for a new one.
    public var maxTCPConnections: Int = 1024
    public var socketBufferBytes: Int32 = 4 << 20
    public var upstreamSockets: Int = 16
    public var batchSize: Int = 32
    /// One stdout line per answer (client, name, type, rcode, origin, server, latency).
    public var queryLog = false

    public init() {}
}

/// One event loop on one thread with its own SO_REUSEPORT sockets, forwarder and
/// buffers. Workers share only the plan (immutable) and the cache (sharded, trylock).
final class Worker {
    let index: Int
    let options: ServerOptions
    let base: EventBase
    let forwarder: Forwarder
    var plan: ForwardingPlan

    struct UDPListener {
        var fd: Int32
        var wildcard: Bool
        var event: OpaquePointer?
    }

    var udpListeners: [UDPListener] = []
    var tcpListenFDs: [Int32] = []
    var tcpListenEvents: [OpaquePointer] = []
    /// Upstream UDP sockets per family: [0] IPv4, [1] IPv6 (empty when no server uses it).
    var upstreamFDs: [[Int32]] = [[], []]
    var upstreamEvents: [OpaquePointer] = []
    let recvBatch: UDPBatch
    let sendBatch: UDPBatch
    /// Upstream queries of one round, sent with one sendmmsg per upstream socket.
    let upstreamSends: UDPBatch
    let upstreamSorted: UnsafeMutablePointer<kb_mmsghdr>
    let upstreamOrder: UnsafeMutablePointer<Int32>
    /// Unretained views for the per-packet path (the strong references above keep them alive).
    let sendBatchRef: Unmanaged<UDPBatch>
    var listenerFDs = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    let upstreamBatch: UDPBatch
    var timer: OpaquePointer?
    var stopEvent: OpaquePointer?
    var controlEvent: OpaquePointer?
    let control: WorkerControl
    let stopFD: Int32
    var now: UInt64 = 0

    var connections: [TCPConnection?] = []
    var connectionGenerations: [UInt32] = []
    var freeConnectionSlots: [Int] = []
    /// Oldest-activity-first order of open connections, for eviction at the cap.
    var connectionCount = 0
    var upstreamTCP: [Int32: UpstreamTCPQuery] = [:]
    let tcpOut: UnsafeMutableRawPointer
    var droppedReplies: UInt64 = 0
    var tcpAccepted: UInt64 = 0
    let queryLog: Bool
    var tcpEvicted: UInt64 = 0
    /// Times a client's reading was paused because its answers were not being read.
    var tcpPaused: UInt64 = 0

    init(index: Int, options: ServerOptions, plan: ForwardingPlan, cache: PacketCache) throws {
        self.index = index
        self.options = options
        self.plan = plan
        queryLog = options.queryLog
        base = try EventBase()
        forwarder = Forwarder(plan: plan, cache: cache, random: FastRandom(seed: Sys.randomSeed()),
                              upstreamSockets: options.upstreamSockets)
        recvBatch = UDPBatch(capacity: options.batchSize, bufferSize: 4096)
        sendBatch = UDPBatch(capacity: options.batchSize, bufferSize: 4096)
        sendBatchRef = Unmanaged.passUnretained(sendBatch)
        upstreamBatch = UDPBatch(capacity: 16, bufferSize: 8192)
        upstreamSends = UDPBatch(capacity: options.batchSize * 2, bufferSize: 512)
        upstreamSorted = .allocate(capacity: options.batchSize * 2)
        upstreamOrder = .allocate(capacity: options.batchSize * 2)
        tcpOut = .allocate(byteCount: 65_537, alignment: 8)
        stopFD = try Sys.eventfd()
        control = try WorkerControl()
        connections = Array(repeating: nil, count: options.maxTCPConnections)
        connectionGenerations = Array(repeating: 0, count: options.maxTCPConnections)
        freeConnectionSlots = Array((0..<options.maxTCPConnections).reversed())
        try openSockets()
    }

    deinit {
        upstreamSorted.deallocate()
        upstreamOrder.deallocate()
        tcpOut.deallocate()
        listenerFDs.deallocate()
    }

    var unmanaged: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    // MARK: set-up

    func openSockets() throws {
        for ep in options.listen {
            let addr = SocketAddress(ep)
            let domain = ep.address.family == .v4 ? AF_INET : AF_INET6
            // UDP
            let u = try Sys.socket(domain, Int32(SOCK_DGRAM.rawValue))
            try configureListener(u, ep)
            let wildcard = ep.address.isUnspecified
            if wildcard {
                if domain == AF_INET {
                    try Sys.setOption(u, Int32(IPPROTO_IP), kb_opt_ip_pktinfo(), 1, "IP_PKTINFO")
                } else {
                    try Sys.setOption(u, Int32(IPPROTO_IPV6), kb_opt_ipv6_recvpktinfo(), 1, "IPV6_RECVPKTINFO")
                }
            }
            try Sys.setOption(u, SOL_SOCKET, SO_RCVBUF, options.socketBufferBytes, "SO_RCVBUF")
            try Sys.setOption(u, SOL_SOCKET, SO_SNDBUF, options.socketBufferBytes, "SO_SNDBUF")
            try Sys.bind(u, addr)
            udpListeners.append(UDPListener(fd: u, wildcard: wildcard, event: nil))
            listenerFDs.deallocate()
            listenerFDs = .allocate(capacity: udpListeners.count)
            for (i, l) in udpListeners.enumerated() { listenerFDs[i] = l.fd }
            // TCP
            let t = try Sys.socket(domain, Int32(SOCK_STREAM.rawValue))
            try configureListener(t, ep)
            try Sys.bind(t, addr)
            try Sys.listen(t, 1024)
            tcpListenFDs.append(t)
        }
        try openUpstreamSockets(for: plan)
    }

    /// Opens the upstream UDP sockets of each address family the plan's servers use and
    /// that are not open yet (a reload may add an IPv6 upstream). Returns the new ones.
    @discardableResult
    func openUpstreamSockets(for plan: ForwardingPlan) throws -> [Int32] {
        var needs = [false, false]
        for s in plan.servers { needs[s.address.family == .v4 ? 0 : 1] = true }
        var opened: [Int32] = []
        for fam in 0..<2 where needs[fam] && upstreamFDs[fam].isEmpty {
            for _ in 0..<options.upstreamSockets {
                let fd = try Sys.socket(fam == 0 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue))
                try? Sys.setOption(fd, SOL_SOCKET, SO_RCVBUF, options.socketBufferBytes, "SO_RCVBUF")
                // ICMP "port unreachable" from a server with nothing listening (or kube-proxy
                // rejecting a Service without endpoints) fails that attempt at once instead of
                // after upstream-timeout; see drainUpstreamErrors.
                try? Sys.enableReceiveErrors(fd, family: fam == 0 ? AF_INET : AF_INET6)
                // Port 0: the kernel picks a random ephemeral port for each socket.
                upstreamFDs[fam].append(fd)
                opened.append(fd)
            }
        }
        return opened
    }

    func registerUpstream(_ fd: Int32) {
        let ev = base.event(fd: fd, flags: Event.read | Event.persist, { fd, _, arg in
            Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().onUpstreamReadable(fd)
        }, unmanaged)
        upstreamEvents.append(ev)
        Event.add(ev)
    }

    func configureListener(_ fd: Int32, _ ep: Endpoint) throws {
        try Sys.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
        try Sys.setOption(fd, SOL_SOCKET, kb_opt_so_reuseport(), 1, "SO_REUSEPORT")
        if ep.address.family == .v6 {
            try Sys.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY")
        }
    }

    /// Registers every socket with the event base. Called on the worker's own thread.
    func registerEvents() {
        for i in udpListeners.indices {
            let ev = base.event(fd: udpListeners[i].fd, flags: Event.read | Event.persist, { fd, _, arg in
                Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().onListenerReadable(fd)
            }, unmanaged)
            udpListeners[i].event = ev
            Event.add(ev)
        }
        for fd in tcpListenFDs {
            let ev = base.event(fd: fd, flags: Event.read | Event.persist, { fd, _, arg in
                Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().onAcceptable(fd)
            }, unmanaged)
            tcpListenEvents.append(ev)
            Event.add(ev)
        }
        // The socket number the forwarder picks is the position within each family's list.
        for fam in 0..<2 { for fd in upstreamFDs[fam] { registerUpstream(fd) } }
        let t = base.event(fd: -1, flags: Event.persist, { _, _, arg in
            Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().onTimer()
        }, unmanaged)
        timer = t
        Event.add(t, milliseconds: 20)
        let s = base.event(fd: stopFD, flags: Event.read | Event.persist, { _, _, arg in
            Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().base.stop()
        }, unmanaged)
        stopEvent = s
        Event.add(s)
        let c = base.event(fd: control.fd, flags: Event.read | Event.persist, { _, _, arg in
            Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().onControl()
        }, unmanaged)
        controlEvent = c
        Event.add(c)
        control.heartbeat.store(Sys.monotonicMilliseconds(), ordering: .relaxed)
    }

    /// A reload or a metrics request from another thread.
    func onControl() {
        control.drain()
        if let newPlan = control.takePlan() {
            forwarder.install(newPlan)
            plan = newPlan
            if let opened = try? openUpstreamSockets(for: newPlan) { for fd in opened { registerUpstream(fd) } }
        }
        if control.snapshotPending {
            var snap = WorkerSnapshot()
            snap.counters = forwarder.counters
            for i in 0..<16 { snap.rcodes[i] = forwarder.rcodes[i] }
            snap.health = forwarder.health.snapshot
            snap.tcpConnections = connectionCount
            snap.tcpAccepted = tcpAccepted
            snap.tcpEvicted = tcpEvicted
            snap.tcpPaused = tcpPaused
            snap.droppedReplies = droppedReplies
            snap.inFlight = forwarder.inFlight
            control.serve(snap)
        }
    }

    /// Runs the loop on the calling thread until `requestStop()`.
    func run() {
        registerEvents()
        base.run()
        shutdown()
    }

    /// Thread-safe: wakes the loop through its eventfd.
    func requestStop() { Sys.signalEventfd(stopFD) }

    func shutdown() {
        for l in udpListeners { if let e = l.event { Event.free(e) }; Sys.close(l.fd) }
        for e in tcpListenEvents { Event.free(e) }
        for fd in tcpListenFDs { Sys.close(fd) }
        for e in upstreamEvents { Event.free(e) }
        for fam in upstreamFDs { for fd in fam { Sys.close(fd) } }
        for c in connections { c?.close() }
        for q in upstreamTCP.values { q.close() }
        if let t = timer { Event.free(t) }
        if let s = stopEvent { Event.free(s) }
        if let c = controlEvent { Event.free(c) }
        Sys.close(stopFD)
    }

    // MARK: UDP from clients

    func onListenerReadable(_ fd: Int32) {
        guard let li = udpListeners.firstIndex(where: { $0.fd == fd }) else { return }
        let wildcard = udpListeners[li].wildcard
        let batch = recvBatch
        var io = WorkerIO(worker: self)
        // A few batches per wake-up, then yield to other sockets.
        for _ in 0..<4 {
            batch.prepareReceive(batch.capacity, withControl: wildcard)
            let got: Int
            do {
                guard case .done(let n) = try Sys.recvmmsg(fd, batch.msgs, batch.capacity) else { break }
                got = n
                batch.received(n)
            } catch { break }
            now = Sys.monotonicMilliseconds()
            for i in 0..<got {
                let m = batch.msgs + i
                if m.pointee.msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
                    forwarder.counters.dropped &+= 1
                    continue
                }
                var client = ClientHandle()
                client.transport = .udp
                client.slot = UInt32(li)
                let peer = UnsafeRawPointer(batch.names + i)
                let peerLen = Int(m.pointee.msg_hdr.msg_namelen)
                guard let src = SocketAddress.endpoint(peer) else { continue }
                withUnsafeMutableBytes(of: &client.storage) { s in
                    s.baseAddress!.copyMemory(from: peer, byteCount: min(peerLen, 28))
                    s[28] = UInt8(truncatingIfNeeded: peerLen)
                    if wildcard {
                        var ifindex: Int32 = 0
                        let fam = kb_cmsg_get_pktinfo(&m.pointee.msg_hdr, s.baseAddress!.advanced(by: 32).assumingMemoryBound(to: UInt8.self), &ifindex)
                        s[29] = UInt8(truncatingIfNeeded: fam)
                        s.storeBytes(of: ifindex, toByteOffset: 48, as: Int32.self)
                    }
                }
                forwarder.handleQuery(batch.buffer(i), count: Int(m.pointee.msg_len), client: client,
                                      source: src.address, now: now, io: &io)
            }
            flushReplies()
            flushUpstream()
            if got < batch.capacity { break }
        }
    }

    /// Queues one UDP answer; sent by `flushReplies` in one `sendmmsg` per socket run.
    @inline(__always)
    func queueUDPReply(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int) {
        sendBatchRef._withUnsafeGuaranteedRef { queueUDPReply(client, bytes, count, into: $0) }
    }

    @inline(__always)
    func queueUDPReply(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int, into sendBatch: UDPBatch) {
        if sendBatch.count == sendBatch.capacity { flushReplies() }
        guard count <= sendBatch.bufferSize else { droppedReplies &+= 1; return }
        let i = sendBatch.count
        sendBatch.count += 1
        sendBatch.fds[i] = listenerFDs[Int(client.slot)]
        sendBatch.buffer(i).copyMemory(from: bytes, byteCount: count)
        sendBatch.iovs[i].iov_len = count
        let m = sendBatch.msgs + i
        var c = client
        withUnsafeBytes(of: &c.storage) { s in
            UnsafeMutableRawPointer(sendBatch.names + i).copyMemory(from: s.baseAddress!, byteCount: 28)
            m.pointee.msg_hdr.msg_namelen = socklen_t(s[28])
            let fam = Int32(s[29])
            if fam != 0 {
                let ctrl = sendBatch.control + i * sendBatch.controlSize
                _ = kb_cmsg_set_pktinfo(&m.pointee.msg_hdr, ctrl, fam == 4 ? AF_INET : AF_INET6,
                                        s.baseAddress!.advanced(by: 32).assumingMemoryBound(to: UInt8.self),
                                        s.load(fromByteOffset: 48, as: Int32.self))
            } else {
                m.pointee.msg_hdr.msg_control = nil
                m.pointee.msg_hdr.msg_controllen = 0
            }
        }
    }

    func flushReplies() {
        let b = sendBatch
        var start = 0
        while start < b.count {
            var end = start + 1
            while end < b.count && b.fds[end] == b.fds[start] { end += 1 }
            var at = start
            while at < end {
                guard let r = try? Sys.sendmmsg(b.fds[start], b.msgs + at, end - at), case .done(let n) = r, n > 0 else {
                    // Socket buffer full or a per-message error: drop this one, keep the rest.
                    droppedReplies &+= 1
                    at += 1
                    continue
                }
                at += n
            }
            start = end
        }
        b.count = 0
    }

    // MARK: upstream UDP

    func upstreamSocketIndex(_ fd: Int32) -> Int? {
        for fam in 0..<2 { if let i = upstreamFDs[fam].firstIndex(of: fd) { return i } }
        return nil
    }

    func onUpstreamReadable(_ fd: Int32) {
        guard let si = upstreamSocketIndex(fd) else { return }
        let batch = upstreamBatch
        var io = WorkerIO(worker: self)
        for round in 0..<4 {
            batch.prepareReceive(batch.capacity, withControl: false)
            let r: IOResult
            do { r = try Sys.recvmmsg(fd, batch.msgs, batch.capacity) } catch {
                // A queued ICMP error is reported once as the socket's error: read the queue.
                drainUpstreamErrors(fd, socket: si, &io)
                continue
            }
            guard case .done(let got) = r else {
                // Woken with nothing to read: epoll saw EPOLLERR, i.e. an error queue whose
                // socket error a send already consumed. Empty it, or the wake-ups never stop.
                if round == 0 { drainUpstreamErrors(fd, socket: si, &io) }
                break
            }
            batch.received(got)
            now = Sys.monotonicMilliseconds()
            for i in 0..<got {
                let m = batch.msgs + i
                if m.pointee.msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 { continue }
                guard let src = SocketAddress.endpoint(UnsafeRawPointer(batch.names + i)) else { continue }
                forwarder.handleUDPResponse(batch.buffer(i), count: Int(m.pointee.msg_len), socket: si,
                                            source: src.address, port: src.port, now: now, io: &io)
            }
            flushReplies()
            flushUpstream()
            if got < batch.capacity { break }
        }
    }

    /// Reads the socket's error queue (IP_RECVERR): each entry names the server and carries
    /// the start of the query it refused, so the forwarder can fail exactly that attempt.
    /// Bounded per call; the queue must be emptied or epoll keeps reporting EPOLLERR.
    func drainUpstreamErrors(_ fd: Int32, socket si: Int, _ io: inout WorkerIO) {
        let buffer = upstreamBatch.buffer(0)
        for _ in 0..<64 {
            guard let e = try? Sys.receiveError(fd, into: buffer, capacity: 512) else { break }
            now = Sys.monotonicMilliseconds()
            if e.fromICMP, e.bytes >= Header.size, let server = e.destination {
                forwarder.upstreamUnreachable(socket: si, id: Header.id(buffer), server: server.address, port: server.port,
                                              errno: e.errno, now: now, io: &io)
            }
        }
        flushReplies()
        flushUpstream()
    }

    /// Queues an upstream query; `flushUpstream` sends the round's queries grouped by
    /// socket, one sendmmsg each, instead of one sendto per query.
    @inline(__always)
    func sendUpstream(socket: Int, to server: Endpoint, _ bytes: UnsafeRawPointer, _ count: Int) {
        let fam = server.address.family == .v4 ? 0 : 1
        let fds = upstreamFDs[fam]
        guard !fds.isEmpty else { return }
        let b = upstreamSends
        if b.count == b.capacity { flushUpstream() }
        guard count <= b.bufferSize else { return }
        let i = b.count
        b.count += 1
        b.fds[i] = fds[socket % fds.count]
        b.buffer(i).copyMemory(from: bytes, byteCount: count)
        b.iovs[i].iov_len = count
        let addr = SocketAddress(server)
        withUnsafeBytes(of: addr.storage) { UnsafeMutableRawPointer(b.names + i).copyMemory(from: $0.baseAddress!, byteCount: Int(addr.length)) }
        b.msgs[i].msg_hdr.msg_namelen = addr.length
        b.msgs[i].msg_hdr.msg_control = nil
        b.msgs[i].msg_hdr.msg_controllen = 0
    }

    func flushUpstream() {
        forwarder.endUpstreamRound()
        let b = upstreamSends
        let n = b.count
        guard n > 0 else { return }
        b.count = 0
        // Group by socket: a stable insertion sort of at most two batches, into a
        // pre-allocated array; then one sendmmsg per socket.
        let order = upstreamOrder
        for i in 0..<n {
            var j = i
            while j > 0 && b.fds[Int(order[j - 1])] > b.fds[i] { order[j] = order[j - 1]; j -= 1 }
            order[j] = Int32(i)
        }
        for k in 0..<n { upstreamSorted[k] = b.msgs[Int(order[k])] }
        var start = 0
        while start < n {
            let fd = b.fds[Int(order[start])]
            var end = start + 1
            while end < n && b.fds[Int(order[end])] == fd { end += 1 }
            var at = start
            var retried = false
            while at < end {
                let r: IOResult
                do { r = try Sys.sendmmsg(fd, upstreamSorted + at, end - at) } catch let e as SystemError {
                    // An earlier ICMP error (IP_RECVERR) is reported by the next send, which then
                    // sends nothing: send again once. Anything else: this one is lost and the
                    // forwarder's timeout retries it.
                    let asynchronous = e.errno == ECONNREFUSED || e.errno == EHOSTUNREACH || e.errno == ENETUNREACH
                    if !(asynchronous && !retried) { at += 1 }
                    retried = true
                    continue
                } catch { at += 1; continue }
                guard case .done(let sent) = r, sent > 0 else { at += 1; continue }
                at += sent
                retried = false
            }
            start = end
        }
    }

    func logQuery(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int, _ origin: AnswerOrigin) {
        var c = client
        let who: String
        if client.transport == .udp {
            who = withUnsafeBytes(of: &c.storage) { SocketAddress.endpoint($0.baseAddress!)?.description ?? "?" }
        } else {
            let slot = Int(client.slot)
            who = (slot < connections.count ? connections[slot]?.peer.description : nil).map { "tcp:" + $0 } ?? "tcp:?"
        }
        fputs(QueryLog.line(client: who, answer: bytes, count: count, origin: origin), stdout)
    }

    // MARK: time

    func onTimer() {
        now = Sys.monotonicMilliseconds()
        control.heartbeat.store(now, ordering: .relaxed)
        var io = WorkerIO(worker: self)
        forwarder.expire(now: now, io: &io)
        flushReplies()
        flushUpstream()
    }
}

/// The forwarder's view of a worker: answers go into the send batch or a TCP connection,
/// upstream queries out on the worker's sockets. Holds the worker unretained: the
/// worker is alive for as long as its loop runs, and no reference counting happens per query.
struct WorkerIO: ForwarderIO {
    let ref: Unmanaged<Worker>

    init(worker: Worker) { ref = Unmanaged.passUnretained(worker) }

    @inline(__always)
    mutating func reply(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int, origin: AnswerOrigin) {
        ref._withUnsafeGuaranteedRef { w in
            if w.queryLog { w.logQuery(client, bytes, count, origin) }
            if client.transport == .udp { w.queueUDPReply(client, bytes, count) } else { w.tcpReply(client, bytes, count) }
        }
    }

    mutating func event(_ e: ForwarderEvent) {
        switch e {
        case .serverDown(let server, let zone):
            Log.warning("upstream \(server) for \(zone) is down (no answer to \(UpstreamHealth.downAfter) queries); probing it")
        case .serverUp(let server, let zone):
            Log.info("upstream \(server) for \(zone) is up again")
        }
    }

    @inline(__always)
    mutating func sendUDP(socket: Int, to server: Endpoint, _ bytes: UnsafeRawPointer, _ count: Int) {
        ref._withUnsafeGuaranteedRef { $0.sendUpstream(socket: socket, to: server, bytes, count) }
    }

    mutating func sendTCP(to server: Endpoint, token: UInt64, _ bytes: UnsafeRawPointer, _ count: Int) {
        ref._withUnsafeGuaranteedRef { $0.startUpstreamTCP(to: server, token: token, bytes, count) }
    }
}

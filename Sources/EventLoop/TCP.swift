import CLibevent
import DNSWire
import Forwarding
import Glibc
import NetAddress

/// One client TCP connection (RFC 7766): 2-byte length framing, any number of queries in
/// flight, answers written as they complete (possibly out of order). A connection that
/// sends nothing for the idle timeout is closed, whether it is silent or stalled
/// half-way through a message, so a slow client costs one slot and never a worker.
///
/// Backpressure: once `pauseReadingAt` bytes of answers wait for the client to read them,
/// its further queries are left unread (in its socket, where TCP's window stops it) until
/// the backlog drains to half that. A client that reads slowly gets every answer; one that
/// stops reading is closed when it has taken nothing for the idle timeout. The hard cap
/// `maxQueuedBytes` only bounds answers of queries already in flight when reading paused.
final class TCPConnection {
    unowned let worker: Worker
    let fd: Int32
    let slot: Int
    let generation: UInt32
    let peer: IPAddress
    var readEvent: OpaquePointer?
    var writeEvent: OpaquePointer?
    var inBuffer: UnsafeMutableRawPointer
    var inCapacity = 1024
    var inLength = 0
    var outQueue: [UInt8] = []
    var outOffset = 0
    var lastActivity: UInt64 = 0
    var closed = false
    /// While the queries of one read are processed, answers from the cache collect here
    /// and leave in one write: pipelined clients get one segment instead of one per answer.
    var batching = false
    var batch: [UInt8] = []
    /// A client that does not read its answers may not make us buffer without limit.
    static let maxQueuedBytes = 256 * 1024
    static let pauseReadingAt = 64 * 1024
    /// Reading stopped because too many answers wait to be written.
    var readingPaused = false
    var queuedBytes: Int { outQueue.count - outOffset }

    init(worker: Worker, fd: Int32, slot: Int, generation: UInt32, peer: IPAddress) {
        self.worker = worker
        self.fd = fd
        self.slot = slot
        self.generation = generation
        self.peer = peer
        inBuffer = .allocate(byteCount: inCapacity, alignment: 8)
    }

    deinit { inBuffer.deallocate() }

    func start() {
        let arg = Unmanaged.passUnretained(self).toOpaque()
        let r = worker.base.event(fd: fd, flags: Event.read | Event.persist, { _, what, arg in
            let c = Unmanaged<TCPConnection>.fromOpaque(arg!).takeUnretainedValue()
            if what & Event.timeout != 0 { c.worker.closeConnection(c) } else { c.onReadable() }
        }, arg)
        readEvent = r
        Event.add(r, milliseconds: worker.options.tcpIdleTimeoutMs)
        let w = worker.base.event(fd: fd, flags: Event.write, { _, what, arg in
            let c = Unmanaged<TCPConnection>.fromOpaque(arg!).takeUnretainedValue()
            // Answers waited the whole idle timeout without the client taking a byte.
            if what & Event.timeout != 0 { c.worker.closeConnection(c) } else { c.onWritable() }
        }, arg)
        writeEvent = w
    }

    /// Waits for the socket to take more of the queued answers, for at most the idle timeout.
    func armWrite() {
        if let w = writeEvent { Event.add(w, milliseconds: worker.options.tcpIdleTimeoutMs) }
    }

    /// Called after answers were queued: stop reading queries while the backlog is large.
    func applyBackpressure() {
        guard !readingPaused, queuedBytes >= TCPConnection.pauseReadingAt, let r = readEvent else { return }
        readingPaused = true
        worker.tcpPaused &+= 1
        Event.remove(r)
    }

    /// Called when the backlog shrank: read (and answer) queries again.
    func resumeReadingIfDrained() {
        guard readingPaused, queuedBytes <= TCPConnection.pauseReadingAt / 2, let r = readEvent else { return }
        readingPaused = false
        Event.add(r, milliseconds: worker.options.tcpIdleTimeoutMs)
        // Complete queries read before the pause are still in the buffer.
        processMessages()
        if !closed && !readingPaused { onReadable() }
    }

    func onReadable() {
        while !closed && !readingPaused {
            if inLength == inCapacity {
                // Grow to hold the message being read (at most 2 + 65535 bytes).
                let want = inLength >= 2 ? 2 + Int(Wire.u16(inBuffer, 0)) : inCapacity * 2
                guard want > inCapacity else { break }
                let nb = UnsafeMutableRawPointer.allocate(byteCount: want, alignment: 8)
                nb.copyMemory(from: inBuffer, byteCount: inLength)
                inBuffer.deallocate()
                inBuffer = nb
                inCapacity = want
            }
            let r: IOResult
            do { r = try Sys.read(fd, inBuffer + inLength, inCapacity - inLength) } catch {
                worker.closeConnection(self); return
            }
            guard case .done(let n) = r else { break }
            if n == 0 { worker.closeConnection(self); return }
            inLength += n
            processMessages()
        }
    }

    func processMessages() {
        var at = 0
        var io = WorkerIO(worker: worker)
        worker.now = Sys.monotonicMilliseconds()
        lastActivity = worker.now
        batching = true
        defer {
            batching = false
            flushBatch()
            worker.flushUpstream()
        }
        while inLength - at >= 2 && !readingPaused {
            let len = Int(Wire.u16(inBuffer, at))
            guard inLength - at - 2 >= len else { break }
            if len == 0 { worker.closeConnection(self); return }
            var client = ClientHandle()
            client.transport = .tcp
            client.slot = UInt32(slot)
            client.generation = generation
            worker.forwarder.handleQuery(inBuffer + at + 2, count: len, client: client, source: peer,
                                         now: worker.now, io: &io)
            if closed { return }
            at += 2 + len
            // Large answers: write them before reading more, and pause if they do not go out.
            if batch.count >= TCPConnection.pauseReadingAt { flushBatch() }
        }
        worker.flushReplies()
        if at > 0 {
            if at < inLength { inBuffer.copyMemory(from: inBuffer + at, byteCount: inLength - at) }
            inLength -= at
        }
    }

    func flushBatch() {
        guard !batch.isEmpty, !closed else { batch.removeAll(keepingCapacity: true); return }
        var sent = 0
        if outQueue.isEmpty {
            while sent < batch.count {
                guard let r = batch.withUnsafeBytes({ try? Sys.write(fd, $0.baseAddress! + sent, $0.count - sent) }) else {
                    worker.closeConnection(self); return
                }
                guard case .done(let n) = r else { break }
                sent += n
            }
        }
        if sent < batch.count {
            if outQueue.count - outOffset + batch.count - sent > TCPConnection.maxQueuedBytes {
                worker.closeConnection(self)
                return
            }
            outQueue.append(contentsOf: batch[sent...])
            armWrite()
            applyBackpressure()
        }
        batch.removeAll(keepingCapacity: true)
    }

    func send(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard !closed else { return }
        if batching {
            batch.append(UInt8(count >> 8))
            batch.append(UInt8(count & 0xff))
            batch.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: count))
            return
        }
        let out = worker.tcpOut
        Wire.put16(out, 0, UInt16(count))
        (out + 2).copyMemory(from: bytes, byteCount: count)
        var sent = 0
        if outQueue.isEmpty {
            while sent < count + 2 {
                guard let r = try? Sys.write(fd, out + sent, count + 2 - sent) else { worker.closeConnection(self); return }
                guard case .done(let n) = r else { break }
                sent += n
            }
            if sent == count + 2 { return }
        }
        if outQueue.count - outOffset + count + 2 - sent > TCPConnection.maxQueuedBytes {
            worker.closeConnection(self)
            return
        }
        outQueue.append(contentsOf: UnsafeRawBufferPointer(start: out + sent, count: count + 2 - sent))
        armWrite()
        applyBackpressure()
    }

    func onWritable() {
        while outOffset < outQueue.count {
            let r = outQueue.withUnsafeBytes { b in try? Sys.write(fd, b.baseAddress! + outOffset, b.count - outOffset) }
            guard let res = r else { worker.closeConnection(self); return }
            guard case .done(let n) = res else { break }
            outOffset += n
        }
        if outOffset == outQueue.count {
            outQueue.removeAll(keepingCapacity: true)
            outOffset = 0
        } else {
            if outOffset >= 64 * 1024 {
                // Drop what was written so the queue does not only ever grow.
                outQueue.removeSubrange(0..<outOffset)
                outOffset = 0
            }
            armWrite()
        }
        lastActivity = Sys.monotonicMilliseconds()
        resumeReadingIfDrained()
    }

    func close() {
        guard !closed else { return }
        closed = true
        if let r = readEvent { Event.free(r) }
        if let w = writeEvent { Event.free(w) }
        readEvent = nil
        writeEvent = nil
        Sys.close(fd)
    }
}

extension Worker {
    func onAcceptable(_ listenFD: Int32) {
        for _ in 0..<64 {
            var peer = SocketAddress()
            let r: IOResult
            do { r = try Sys.accept(listenFD, peer: &peer) } catch { return }
            guard case .done(let fd) = r else { return }
            guard let ep = peer.endpoint else { Sys.close(Int32(fd)); continue }
            // Answers are written whole; Nagle would hold back the next one behind an ACK.
            try? Sys.setOption(Int32(fd), Int32(IPPROTO_TCP), TCP_NODELAY, 1, "TCP_NODELAY")
            tcpAccepted &+= 1
            if freeConnectionSlots.isEmpty { evictOldestConnection() }
            guard let slot = freeConnectionSlots.popLast() else { Sys.close(Int32(fd)); continue }
            connectionGenerations[slot] &+= 1
            let c = TCPConnection(worker: self, fd: Int32(fd), slot: slot, generation: connectionGenerations[slot],
                                  peer: ep.address)
            c.lastActivity = Sys.monotonicMilliseconds()
            connections[slot] = c
            connectionCount += 1
            c.start()
        }
    }

    /// At the cap, the connection that has been quiet the longest makes room (RFC 7766 6.2.3).
    func evictOldestConnection() {
        var oldest: TCPConnection?
        for case let c? in connections where oldest == nil || c.lastActivity < oldest!.lastActivity { oldest = c }
        if let c = oldest { tcpEvicted &+= 1; closeConnection(c) }
    }

    func closeConnection(_ c: TCPConnection) {
        guard !c.closed else { return }
        c.close()
        if connections[c.slot] === c {
            connections[c.slot] = nil
            freeConnectionSlots.append(c.slot)
            connectionCount -= 1
        }
    }

    func tcpReply(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int) {
        let slot = Int(client.slot)
        guard slot < connections.count, let c = connections[slot], c.generation == client.generation else {
            droppedReplies &+= 1
            return
        }
        c.send(bytes, count)
    }

    // MARK: upstream TCP (retry after TC=1)

    func startUpstreamTCP(to server: Endpoint, token: UInt64, _ bytes: UnsafeRawPointer, _ count: Int) {
        let q = UpstreamTCPQuery(worker: self, token: token, query: UnsafeRawBufferPointer(start: bytes, count: count))
        do {
            try q.start(SocketAddress(server))
            upstreamTCP[q.fd] = q
        } catch {
            var io = WorkerIO(worker: self)
            forwarder.tcpFailed(token: token, now: now, io: &io)
        }
    }

    func finishUpstreamTCP(_ q: UpstreamTCPQuery, answer: UnsafeMutableRawPointer?, count: Int) {
        upstreamTCP[q.fd] = nil
        now = Sys.monotonicMilliseconds()
        var io = WorkerIO(worker: self)
        if let a = answer {
            forwarder.handleTCPResponse(token: q.token, a, count: count, now: now, io: &io)
        } else {
            forwarder.tcpFailed(token: q.token, now: now, io: &io)
        }
        q.close()
        flushReplies()
        flushUpstream()
    }
}

/// One query retried over TCP to an upstream server: connect, write, read one framed
/// answer, close. Rare (only after TC=1), so it may allocate.
final class UpstreamTCPQuery {
    unowned let worker: Worker
    let token: UInt64
    var fd: Int32 = -1
    var out: [UInt8]
    var written = 0
    var input: [UInt8] = []
    var event: OpaquePointer?
    var connected = false
    var done = false

    init(worker: Worker, token: UInt64, query: UnsafeRawBufferPointer) {
        self.worker = worker
        self.token = token
        out = [UInt8(query.count >> 8), UInt8(query.count & 0xff)] + Array(query)
    }

    var writeEvent: OpaquePointer?

    func start(_ addr: SocketAddress) throws {
        fd = try Sys.socket(addr.family, Int32(SOCK_STREAM.rawValue))
        do { connected = try Sys.connect(fd, addr) } catch { Sys.close(fd); throw error }
        let arg = Unmanaged.passUnretained(self).toOpaque()
        let r = worker.base.event(fd: fd, flags: Event.read | Event.persist, { _, what, arg in
            let q = Unmanaged<UpstreamTCPQuery>.fromOpaque(arg!).takeUnretainedValue()
            if what & Event.timeout != 0 { q.fail() } else { q.onReadable() }
        }, arg)
        event = r
        Event.add(r, milliseconds: Int(worker.plan.upstreamTimeoutMs))
        // Writability also reports the end of a non-blocking connect.
        let w = worker.base.event(fd: fd, flags: Event.write, { _, _, arg in
            Unmanaged<UpstreamTCPQuery>.fromOpaque(arg!).takeUnretainedValue().onWritable()
        }, arg)
        writeEvent = w
        Event.add(w)
    }

    func fail() { worker.finishUpstreamTCP(self, answer: nil, count: 0) }

    func onWritable() {
        if !connected {
            if Sys.socketError(fd) != 0 { return fail() }
            connected = true
        }
        while written < out.count {
            let r = out.withUnsafeBytes { b in try? Sys.write(fd, b.baseAddress! + written, b.count - written) }
            guard let res = r else { return fail() }
            guard case .done(let n) = res else { if let w = writeEvent { Event.add(w) }; return }
            written += n
        }
    }

    func onReadable() {
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while !done {
            let r = chunk.withUnsafeMutableBytes { b in try? Sys.read(fd, b.baseAddress!, b.count) }
            guard let res = r else { return fail() }
            guard case .done(let n) = res else { return }
            if n == 0 { return fail() }
            input.append(contentsOf: chunk[..<n])
            if input.count >= 2 {
                let len = Int(input[0]) << 8 | Int(input[1])
                if input.count >= 2 + len {
                    return input.withUnsafeMutableBytes { b in
                        worker.finishUpstreamTCP(self, answer: b.baseAddress! + 2, count: len)
                    }
                }
            }
        }
    }

    func close() {
        guard !done else { return }
        done = true
        if let e = event { Event.free(e) }
        if let w = writeEvent { Event.free(w) }
        event = nil
        writeEvent = nil
        if fd >= 0 { Sys.close(fd) }
    }
}

/// Decides, message by message, whether a reply belongs to the request in flight and when
/// the exchange is over. Kept apart from the socket so that the sequence-number and port-id
/// checks are unit-tested with canned kernel replies.
struct ReplyCollector {
    let sequence: UInt32
    let portID: UInt32
    let isDump: Bool
    private(set) var collected: [NetlinkMessage] = []
    /// Messages that answered some other request (a stale reply after a timeout) or came
    /// from someone other than the kernel on our port: never mistaken for our answer.
    private(set) var ignored = 0
    private(set) var interrupted = false

    enum Outcome: Equatable {
        case needMore
        case finished
        case failed(errno: Int32, message: String?)
    }

    init(sequence: UInt32, portID: UInt32, isDump: Bool) {
        self.sequence = sequence
        self.portID = portID
        self.isDump = isDump
    }

    mutating func consume(_ m: NetlinkMessage) throws(NetlinkParseError) -> Outcome {
        guard m.header.sequence == sequence, m.header.portID == portID else {
            ignored += 1
            return .needMore
        }
        if m.header.flags & NL.Flag.dumpInterrupted != 0 { interrupted = true }
        switch m.header.type {
        case NL.MessageType.noop:
            return .needMore
        case NL.MessageType.error:
            let reply = try NetlinkParser.errorReply(m)
            return reply.errno == 0 ? .finished : .failed(errno: reply.errno, message: reply.message)
        case NL.MessageType.done:
            let code = NetlinkParser.doneCode(m)
            return code == 0 ? .finished : .failed(errno: code, message: nil)
        case NL.MessageType.overrun:
            return .failed(errno: 75 /* EOVERFLOW */, message: "netlink overrun")
        default:
            collected.append(m)
            return .needMore
        }
    }
}

/// One rtnetlink socket and its single request/ack loop. Every request goes through
/// `exchange`, which numbers it, sends it, and reads until the kernel's ACK, error or
/// NLMSG_DONE for that number — bounded by a deadline and a datagram count.
final class NetlinkSocket {
    let fd: Int32
    let portID: UInt32
    let timeoutSeconds: Double
    private var sequence: UInt32
    private var buffer: [UInt8]

    /// `groups` subscribes to notifications (RTMGRP_*) for `--watch`; 0 for request sockets.
    init(groups: UInt32 = 0, timeoutSeconds: Double = 5) throws(RouteError) {
        do {
            (fd, portID) = try Sys.openNetlinkSocket(groups: groups)
            // Extended acks turn "Invalid argument" into "Nexthop has invalid gateway".
            try Sys.setIntOption(fd, level: NL.SocketOption.level, name: NL.SocketOption.extendedAck, value: 1, what: "NETLINK_EXT_ACK")
            // Capped acks: the kernel does not echo our whole request back in every ACK.
            try Sys.setIntOption(fd, level: NL.SocketOption.level, name: NL.SocketOption.capAck, value: 1, what: "NETLINK_CAP_ACK")
        } catch {
            throw .system(error)
        }
        self.timeoutSeconds = timeoutSeconds
        // Start from the clock like iproute2, so that two runs sharing a (recycled) port id
        // cannot mistake each other's replies.
        sequence = UInt32(truncatingIfNeeded: Int(Sys.monotonicSeconds() * 1000))
        buffer = [UInt8](repeating: 0, count: 256 * 1024)
    }

    deinit { Sys.close(fd) }

    /// Sends the request `build` makes for the next sequence number and returns the data
    /// messages of the reply (empty for a plain ACK). `operation` is the `ip` command it
    /// stands for, used in error messages.
    func exchange(operation: String, isDump: Bool, build: (UInt32) -> [UInt8]) throws(RouteError) -> (messages: [NetlinkMessage], interrupted: Bool) {
        sequence &+= 1
        let request = build(sequence)
        var collector = ReplyCollector(sequence: sequence, portID: portID, isDump: isDump)
        let deadline = Sys.monotonicSeconds() + timeoutSeconds
        do {
            var sent = false
            for _ in 0..<100 where !sent {
                switch try Sys.sendToKernel(fd, request) {
                case .done: sent = true
                case .wouldBlock: _ = try Sys.waitReadable(fd, timeoutMilliseconds: 10)
                }
            }
            guard sent else { throw RouteError.timeout(operation: operation, seconds: timeoutSeconds) }
            // Bounded: a route dump of a full Internet table is ~1M routes in ~30k datagrams.
            for _ in 0..<1_000_000 {
                let left = deadline - Sys.monotonicSeconds()
                if left <= 0 { break }
                guard try Sys.waitReadable(fd, timeoutMilliseconds: Int32(min(left, 1) * 1000) + 1) else { continue }
                switch try Sys.receive(fd, into: &buffer) {
                case .wouldBlock:
                    continue
                case .done(let r):
                    if r.overflowed { throw RouteError.kernel(operation: operation, errno: 105, message: "netlink receive buffer overflowed") }
                    guard r.length <= buffer.count else {
                        throw RouteError.malformedReply(operation: operation, .truncated(what: "datagram", needed: r.length, available: buffer.count))
                    }
                    for m in try NetlinkParser.messages(in: buffer[0..<r.length]) {
                        switch try collector.consume(m) {
                        case .needMore: continue
                        case .finished: return (collector.collected, collector.interrupted)
                        case let .failed(code, message):
                            throw RouteError.kernel(operation: operation, errno: code, message: message)
                        }
                    }
                }
            }
        } catch let e as SystemError {
            throw .system(e)
        } catch let e as NetlinkParseError {
            throw .malformedReply(operation: operation, e)
        } catch let e as RouteError {
            throw e
        } catch {
            throw .timeout(operation: operation, seconds: timeoutSeconds)
        }
        throw .timeout(operation: operation, seconds: timeoutSeconds)
    }

    enum Notification {
        case messages([NetlinkMessage])
        /// The kernel dropped notifications (ENOBUFS): the caller must resynchronise.
        case overflow
        case nothing
    }

    /// Waits up to `timeoutMilliseconds` for multicast notifications (`--watch`).
    func receiveNotifications(timeoutMilliseconds: Int32) throws(RouteError) -> Notification {
        do {
            guard try Sys.waitReadable(fd, timeoutMilliseconds: timeoutMilliseconds) else { return .nothing }
            switch try Sys.receive(fd, into: &buffer) {
            case .wouldBlock: return .nothing
            case .done(let r):
                if r.overflowed || r.length > buffer.count { return .overflow }
                return .messages(try NetlinkParser.messages(in: buffer[0..<r.length]))
            }
        } catch let e as SystemError {
            throw .system(e)
        } catch let e as NetlinkParseError {
            throw .malformedReply(operation: "route notification", e)
        } catch {
            return .overflow
        }
    }
}

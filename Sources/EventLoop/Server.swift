import CLibevent
import Forwarding
import Glibc
import NetAddress
import PacketCache

/// The running DNS service: N workers, each a thread with its own event base and its own
/// SO_REUSEPORT sockets, so the kernel spreads clients across cores without a shared queue.
public final class DNSServer {
    public let options: ServerOptions
    public let cache: PacketCache
    let workers: [Worker]
    var threads: [pthread_t] = []

    /// Opens every socket before any thread starts, so a bad address or a port in use is
    /// reported at once and nothing half-starts.
    public init(options: ServerOptions, plan: ForwardingPlan, cacheBytes: Int) throws {
        self.options = options
        HashSeed.set(Sys.randomSeed())
        cache = PacketCache(capacityBytes: cacheBytes, shardCount: max(16, options.threads * 8))
        var ws: [Worker] = []
        for i in 0..<max(1, options.threads) {
            ws.append(try Worker(index: i, options: options, plan: plan, cache: cache))
        }
        workers = ws
    }

    /// Starts the worker threads.
    public func start() throws {
        for w in workers {
            var tid = pthread_t()
            let arg = Unmanaged.passRetained(w).toOpaque()
            let r = pthread_create(&tid, nil, { arg in
                let w = Unmanaged<Worker>.fromOpaque(arg!).takeRetainedValue()
                w.run()
                return nil
            }, arg)
            if r != 0 { throw SystemError("pthread_create", r) }
            threads.append(tid)
        }
    }

    /// Asks every worker to stop and waits for them; sockets are closed on the way out.
    public func stop() {
        for w in workers { w.requestStop() }
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
    }

    /// Hands a new plan (a reload) to every worker; each switches at its next loop turn.
    public func install(_ plan: ForwardingPlan) {
        for w in workers { w.control.post(plan: plan) }
    }

    public var workerCount: Int { workers.count }

    /// One snapshot per worker, taken on the workers' threads; nil for a worker whose loop
    /// did not answer within `timeoutMs` (a stuck loop).
    public func snapshots(timeoutMs: Int = 1000) -> [WorkerSnapshot?] {
        workers.map { $0.control.requestSnapshot(timeoutMs: timeoutMs) }
    }

    /// True when every worker's loop ran its timer within `ms` milliseconds.
    public func loopsTurning(withinMs ms: UInt64) -> Bool {
        let now = Sys.monotonicMilliseconds()
        return workers.allSatisfy { now &- $0.control.heartbeat.load(ordering: .relaxed) <= ms }
    }

    /// Totals over all workers; used for the exit summary once the workers have stopped.
    public var counters: ForwarderCounters {
        var total = ForwarderCounters()
        for w in workers {
            let c = w.forwarder.counters
            total.queriesUDP += c.queriesUDP; total.queriesTCP += c.queriesTCP
            total.cacheHits += c.cacheHits; total.cacheMisses += c.cacheMisses
            total.staleServed += c.staleServed; total.coalesced += c.coalesced
            total.prefetches += c.prefetches; total.upstreamQueries += c.upstreamQueries
            total.upstreamTimeouts += c.upstreamTimeouts; total.upstreamErrors += c.upstreamErrors
            total.tcpFallbacks += c.tcpFallbacks; total.retransmissions += c.retransmissions
            total.upstreamUnreachable += c.upstreamUnreachable
            total.mismatched += c.mismatched
            total.servfail += c.servfail; total.formerr += c.formerr; total.refused += c.refused
            total.dropped += c.dropped; total.overloaded += c.overloaded; total.truncated += c.truncated
        }
        return total
    }
}

/// Blocks the process-directed signals in every thread (call before starting workers) and
/// waits for one on the calling thread, so no worker is ever interrupted by a handler.
public enum SignalWaiter {
    public enum Received { case terminate, reload }

    public static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Waits for SIGTERM/SIGINT/SIGHUP, or returns nil after `timeoutMs` (for watchdog pings).
    public static func wait(timeoutMs: Int? = nil) -> Received? {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
        while true {
            var sig: Int32 = 0
            if let ms = timeoutMs {
                var ts = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
                sig = sigtimedwait(&set, nil, &ts)
                if sig < 0 {
                    if errno == EAGAIN { return nil }
                    continue
                }
                return sig == SIGHUP ? .reload : .terminate
            }
            if sigwait(&set, &sig) == 0 {
                return sig == SIGHUP ? .reload : .terminate
            }
        }
    }
}

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

    /// Sums the workers' counters (racy reads of words written by one thread each).
    public var counters: ForwarderCounters {
        var total = ForwarderCounters()
        for w in workers {
            let c = w.forwarder.counters
            total.queriesUDP += c.queriesUDP; total.queriesTCP += c.queriesTCP
            total.cacheHits += c.cacheHits; total.cacheMisses += c.cacheMisses
            total.staleServed += c.staleServed; total.coalesced += c.coalesced
            total.prefetches += c.prefetches; total.upstreamQueries += c.upstreamQueries
            total.upstreamTimeouts += c.upstreamTimeouts; total.upstreamErrors += c.upstreamErrors
            total.tcpFallbacks += c.tcpFallbacks; total.mismatched += c.mismatched
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

    public static func wait() -> Received {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
        while true {
            var sig: Int32 = 0
            if sigwait(&set, &sig) == 0 {
                return sig == SIGHUP ? .reload : .terminate
            }
        }
    }
}

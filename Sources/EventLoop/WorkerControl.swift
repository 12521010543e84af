import CLibevent
import Forwarding
import Glibc
import Synchronization

/// What a worker reports about itself for /metrics, copied on its own thread so the
/// scraper never reads memory a worker is writing.
public struct WorkerSnapshot {
    public var counters = ForwarderCounters()
    public var rcodes = [UInt64](repeating: 0, count: 16)
    public var health: UpstreamHealth.Snapshot?
    public var tcpConnections = 0
    public var tcpAccepted: UInt64 = 0
    public var tcpEvicted: UInt64 = 0
    public var tcpPaused: UInt64 = 0
    public var droppedReplies: UInt64 = 0
    public var inFlight = 0
}

/// Cross-thread requests to one worker: a new plan (reload) or a snapshot. The main or
/// admin thread fills the mailbox under a mutex and wakes the loop through an eventfd;
/// the worker acts at the top of its next loop iteration, never in the middle of a query.
final class WorkerControl {
    let fd: Int32
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var newPlan: ForwardingPlan?
    private var planApplied = 0
    private var snapshotWanted = 0
    private var snapshotServed = 0
    private var snapshot = WorkerSnapshot()
    /// Monotonic milliseconds of the loop's last timer tick: /healthz and the watchdog.
    let heartbeat = Atomic<UInt64>(0)

    init() throws {
        fd = try Sys.eventfd()
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex); mutex.deallocate()
        pthread_cond_destroy(cond); cond.deallocate()
        Sys.close(fd)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    // MARK: other threads

    func post(plan: ForwardingPlan) {
        locked { newPlan = plan }
        Sys.signalEventfd(fd)
    }

    /// Asks for a snapshot and waits up to `timeoutMs`; nil when the loop did not answer.
    func requestSnapshot(timeoutMs: Int) -> WorkerSnapshot? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        snapshotWanted += 1
        let ticket = snapshotWanted
        Sys.signalEventfd(fd)
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let ns = Int(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
        deadline.tv_sec += timeoutMs / 1000 + ns / 1_000_000_000
        deadline.tv_nsec = ns % 1_000_000_000
        while snapshotServed < ticket {
            if pthread_cond_timedwait(cond, mutex, &deadline) != 0 { break }
        }
        return snapshotServed >= ticket ? snapshot : nil
    }

    // MARK: the worker's thread

    /// Takes the pending plan, if any.
    func takePlan() -> ForwardingPlan? {
        locked {
            defer { newPlan = nil }
            return newPlan
        }
    }

    var snapshotPending: Bool { locked { snapshotWanted > snapshotServed } }

    func serve(_ s: WorkerSnapshot) {
        locked {
            snapshot = s
            snapshotServed = snapshotWanted
        }
        pthread_cond_broadcast(cond)
    }

    func drain() {
        var v: UInt64 = 0
        _ = read(fd, &v, 8)
    }
}

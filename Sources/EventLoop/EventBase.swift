import CLibevent
import Glibc

/// The slice of libevent kubebridge uses: one base per worker thread, persistent read
/// events, timers. Callbacks are C function pointers; context travels through `arg` as an
/// unretained object pointer whose owner outlives the event.
typealias EventCallback = @convention(c) (Int32, Int16, UnsafeMutableRawPointer?) -> Void

final class EventBase {
    let base: OpaquePointer

    init() throws {
        // No locking: each base is touched by its own thread only.
        guard let cfg = event_config_new() else { throw SystemError("event_config_new", ENOMEM) }
        defer { event_config_free(cfg) }
        event_config_set_flag(cfg, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue))
        guard let b = event_base_new_with_config(cfg) else { throw SystemError("event_base_new", ENOMEM) }
        base = b
    }

    deinit { event_base_free(base) }

    func event(fd: Int32, flags: Int32, _ cb: EventCallback, _ arg: UnsafeMutableRawPointer) -> OpaquePointer {
        event_new(base, fd, Int16(flags), cb, arg)!
    }

    /// Runs until `stop()`.
    func run() { event_base_loop(base, 0) }
    func stop() { event_base_loopbreak(base) }
}

enum Event {
    static let read = Int32(EV_READ)
    static let write = Int32(EV_WRITE)
    static let persist = Int32(EV_PERSIST)
    static let timeout = Int16(EV_TIMEOUT)

    static func add(_ ev: OpaquePointer, milliseconds: Int? = nil) {
        if let ms = milliseconds {
            var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
            event_add(ev, &tv)
        } else {
            event_add(ev, nil)
        }
    }

    static func remove(_ ev: OpaquePointer) { event_del(ev) }
    static func free(_ ev: OpaquePointer) { event_free(ev) }
}

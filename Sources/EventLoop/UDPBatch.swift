import CLibevent
import CShim
import Glibc

/// Pre-allocated `mmsghdr` arrays with their buffers, addresses and control space, for
/// `recvmmsg`/`sendmmsg`. Allocated once per worker; the packet path only resets lengths.
final class UDPBatch {
    let capacity: Int
    let bufferSize: Int
    let msgs: UnsafeMutablePointer<kb_mmsghdr>
    let iovs: UnsafeMutablePointer<iovec>
    let names: UnsafeMutablePointer<sockaddr_storage>
    let control: UnsafeMutableRawPointer
    let controlSize: Int
    let buffers: UnsafeMutableRawPointer
    /// For send batches: which socket each message goes out on.
    let fds: UnsafeMutablePointer<Int32>
    var count = 0

    init(capacity: Int, bufferSize: Int) {
        self.capacity = capacity
        self.bufferSize = bufferSize
        controlSize = (kb_pktinfo_space() + 7) & ~7
        msgs = .allocate(capacity: capacity)
        iovs = .allocate(capacity: capacity)
        names = .allocate(capacity: capacity)
        control = .allocate(byteCount: controlSize * capacity, alignment: 8)
        buffers = .allocate(byteCount: bufferSize * capacity, alignment: 16)
        fds = .allocate(capacity: capacity)
        for i in 0..<capacity {
            iovs[i] = iovec(iov_base: buffers + i * bufferSize, iov_len: bufferSize)
            msgs[i] = kb_mmsghdr(msg_hdr: msghdr(), msg_len: 0)
            msgs[i].msg_hdr.msg_iov = iovs + i
            msgs[i].msg_hdr.msg_iovlen = 1
            msgs[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
        }
    }

    deinit {
        msgs.deallocate(); iovs.deallocate(); names.deallocate()
        control.deallocate(); buffers.deallocate(); fds.deallocate()
    }

    @inline(__always) func buffer(_ i: Int) -> UnsafeMutableRawPointer { buffers + i * bufferSize }

    /// Entries the last receive filled (and the kernel overwrote lengths of).
    var used = 0
    var preparedWithControl: Bool?

    /// Resets the lengths the kernel overwrote on the last receive: only the entries it
    /// filled, so a wake-up for one datagram does not rewrite the whole batch.
    @inline(__always)
    func prepareReceive(_ n: Int, withControl: Bool) {
        let count = preparedWithControl == withControl ? min(used, n) : n
        preparedWithControl = withControl
        used = 0
        for i in 0..<count {
            msgs[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            iovs[i].iov_len = bufferSize
            if withControl {
                msgs[i].msg_hdr.msg_control = control + i * controlSize
                msgs[i].msg_hdr.msg_controllen = controlSize
            } else {
                msgs[i].msg_hdr.msg_control = nil
                msgs[i].msg_hdr.msg_controllen = 0
            }
            msgs[i].msg_hdr.msg_flags = 0
        }
    }

    /// Records how many entries a receive filled, for the next `prepareReceive`.
    @inline(__always)
    func received(_ n: Int) { used = n }
}

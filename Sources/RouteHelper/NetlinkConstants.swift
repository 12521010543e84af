/// Numbers from <linux/netlink.h> and <linux/rtnetlink.h>, spelled in Swift so that the
/// message builders and the reply parser stay pure functions over bytes with no C in the
/// way (they are fuzzed and tested byte-for-byte). `NetlinkConstantsTests` checks every
/// value here against the kernel headers through CShim, so a typo cannot hide.
enum NL {
    static let headerSize = 16
    static let rtmsgSize = 12
    /// `NLMSG_ALIGNTO` and `RTA_ALIGNTO` are both 4.
    static let alignment = 4

    enum MessageType {
        static let noop: UInt16 = 1
        static let error: UInt16 = 2
        static let done: UInt16 = 3
        static let overrun: UInt16 = 4
        static let newRoute: UInt16 = 24
        static let delRoute: UInt16 = 25
        static let getRoute: UInt16 = 26
    }

    /// `nlmsg_flags`. The same bits mean different things for new, get and error messages.
    enum Flag {
        static let request: UInt16 = 0x1
        static let multi: UInt16 = 0x2
        static let ack: UInt16 = 0x4
        static let dumpInterrupted: UInt16 = 0x10
        /// `NLM_F_ROOT | NLM_F_MATCH`.
        static let dump: UInt16 = 0x300
        static let replace: UInt16 = 0x100
        static let exclusive: UInt16 = 0x200
        static let create: UInt16 = 0x400
        /// On an error message: the echoed request was cut to its header.
        static let capped: UInt16 = 0x100
        /// On an error message: extended-ack attributes follow the echoed request.
        static let ackTLVs: UInt16 = 0x200
    }

    enum ErrorAttribute {
        static let message: UInt16 = 1
        static let offset: UInt16 = 2
    }

    enum SocketOption {
        static let level: Int32 = 270 // SOL_NETLINK
        static let capAck: Int32 = 10
        static let extendedAck: Int32 = 11
        static let strictCheck: Int32 = 12
    }

    static let protocolRoute: Int32 = 0 // NETLINK_ROUTE

    enum Group {
        static let ipv4Route: UInt32 = 0x40
        static let ipv6Route: UInt32 = 0x400
    }
}

/// `rtattr` types of a route message.
enum RTA {
    static let dst: UInt16 = 1
    static let src: UInt16 = 2
    static let oif: UInt16 = 4
    static let gateway: UInt16 = 5
    static let priority: UInt16 = 6
    static let prefsrc: UInt16 = 7
    static let multipath: UInt16 = 9
    static let table: UInt16 = 15
    static let via: UInt16 = 18
}

/// `rtm_type`, `rtm_scope`, `rtm_table` and `rtm_protocol` values.
enum RTN {
    static let unspec: UInt8 = 0
    static let unicast: UInt8 = 1
    static let local: UInt8 = 2
    static let blackhole: UInt8 = 6
}

enum RTScope {
    static let universe: UInt8 = 0
    static let link: UInt8 = 253
    static let host: UInt8 = 254
    static let nowhere: UInt8 = 255
}

enum RTTable {
    static let unspec: UInt32 = 0
    static let main: UInt32 = 254
    static let local: UInt32 = 255
}

enum RTProt {
    static let kernel: UInt8 = 2
    static let boot: UInt8 = 3
    static let `static`: UInt8 = 4
}

/// Address families as the kernel writes them in `rtm_family`.
enum AddressFamilyNumber {
    static let inet: UInt8 = 2
    static let inet6: UInt8 = 10
}

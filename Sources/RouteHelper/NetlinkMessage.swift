import NetAddress

/// Appends one netlink message: header, family header, attributes. Integers are in host
/// byte order (netlink is a host-local protocol); addresses are in network order. The
/// length field is filled in by `finish()`, so a builder cannot send a wrong length.
struct NetlinkMessageWriter {
    private(set) var bytes: [UInt8]

    init(type: UInt16, flags: UInt16, sequence: UInt32, portID: UInt32 = 0) {
        bytes = []
        bytes.reserveCapacity(128)
        appendHost(UInt32(0)) // nlmsg_len, set by finish()
        appendHost(type)
        appendHost(flags)
        appendHost(sequence)
        appendHost(portID)
    }

    mutating func appendHost<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    /// `struct rtmsg`.
    mutating func appendRouteHeader(family: UInt8, destinationLength: UInt8, table: UInt8,
                                    protocolID: UInt8, scope: UInt8, type: UInt8) {
        bytes.append(contentsOf: [family, destinationLength, 0 /* src_len */, 0 /* tos */,
                                  table, protocolID, scope, type])
        appendHost(UInt32(0)) // rtm_flags
    }

    /// One `rtattr`: 4-byte header, payload, zero padding to the 4-byte boundary.
    mutating func appendAttribute(_ type: UInt16, _ payload: [UInt8]) {
        appendHost(UInt16(4 + payload.count))
        appendHost(type)
        bytes.append(contentsOf: payload)
        padToAlignment()
    }

    mutating func appendAttribute(_ type: UInt16, u32 value: UInt32) {
        var payload: [UInt8] = []
        withUnsafeBytes(of: value) { payload.append(contentsOf: $0) }
        appendAttribute(type, payload)
    }

    private mutating func padToAlignment() {
        while bytes.count % NL.alignment != 0 { bytes.append(0) }
    }

    func finish() -> [UInt8] {
        var out = bytes
        let length = UInt32(out.count)
        withUnsafeBytes(of: length) { raw in
            for i in 0..<4 { out[i] = raw[i] }
        }
        return out
    }
}

/// Pure builders for the route requests kubebridge sends. Each one produces exactly the
/// bytes `ip` sends for the command in its doc comment (attribute order included), so the
/// tests can compare against captures of `ip` itself. `sequence` is the caller's; the port
/// id is 0 ("to the kernel").
enum RouteMessage {
    /// `ip route add DST [via GW] [metric M] [table T] [dev IFACE] proto kubebridge`
    ///
    /// `NLM_F_CREATE|NLM_F_EXCL`: fails with EEXIST rather than touching a route that
    /// appeared since the dump, so a race with the CNI or an admin cannot make us clobber it.
    static func add(_ spec: RouteSpec, sequence: UInt32) -> [UInt8] {
        newRoute(spec, flags: NL.Flag.request | NL.Flag.ack | NL.Flag.exclusive | NL.Flag.create, sequence: sequence)
    }

    /// `ip route replace DST [via GW] [metric M] [table T] [dev IFACE] proto kubebridge`
    ///
    /// Used only on a route the plan found to be kubebridge's (or one `--adopt` hands over);
    /// the kernel matches the route to replace on destination, TOS, table and metric.
    static func replace(_ spec: RouteSpec, sequence: UInt32) -> [UInt8] {
        newRoute(spec, flags: NL.Flag.request | NL.Flag.ack | NL.Flag.replace | NL.Flag.create, sequence: sequence)
    }

    /// `ip route del DST [via GW] [metric M] [table T] [dev IFACE] proto kubebridge`
    ///
    /// The protocol id travels in the request: both the IPv4 FIB and IPv6 refuse (ESRCH) to
    /// delete a route whose protocol differs, so even a stale dump cannot make us delete a
    /// route kubebridge did not create. Scope NOWHERE and type UNSPEC mean "any", as in `ip`.
    static func delete(_ spec: RouteSpec, sequence: UInt32) -> [UInt8] {
        var w = NetlinkMessageWriter(type: NL.MessageType.delRoute, flags: NL.Flag.request | NL.Flag.ack, sequence: sequence)
        appendBody(&w, spec, scope: RTScope.nowhere, type: RTN.unspec)
        return w.finish()
    }

    /// `ip -4 route show table all` (or `ip -6 …`): a dump of every table of one family.
    static func dump(family: IPAddress.Family, sequence: UInt32) -> [UInt8] {
        var w = NetlinkMessageWriter(type: NL.MessageType.getRoute, flags: NL.Flag.request | NL.Flag.dump, sequence: sequence)
        w.appendRouteHeader(family: familyNumber(family), destinationLength: 0, table: 0, protocolID: 0,
                            scope: RTScope.universe, type: RTN.unspec)
        return w.finish()
    }

    static func familyNumber(_ f: IPAddress.Family) -> UInt8 {
        f == .v4 ? AddressFamilyNumber.inet : AddressFamilyNumber.inet6
    }

    private static func newRoute(_ spec: RouteSpec, flags: UInt16, sequence: UInt32) -> [UInt8] {
        var w = NetlinkMessageWriter(type: NL.MessageType.newRoute, flags: flags, sequence: sequence)
        appendBody(&w, spec, scope: spec.scope, type: RTN.unicast)
        return w.finish()
    }

    /// Tables above 255 do not fit `rtm_table`; like `ip`, send RT_TABLE_UNSPEC there and the
    /// real number in RTA_TABLE.
    private static func appendBody(_ w: inout NetlinkMessageWriter, _ spec: RouteSpec, scope: UInt8, type: UInt8) {
        let smallTable = spec.table < 256
        w.appendRouteHeader(family: familyNumber(spec.destination.address.family),
                            destinationLength: UInt8(spec.destination.prefix),
                            table: smallTable ? UInt8(spec.table) : UInt8(RTTable.unspec),
                            protocolID: spec.protocolID, scope: scope, type: type)
        if spec.destination.prefix > 0 {
            w.appendAttribute(RTA.dst, spec.destination.address.bytes)
        }
        if let gw = spec.gateway { w.appendAttribute(RTA.gateway, gw.bytes) }
        if let metric = spec.priority { w.appendAttribute(RTA.priority, u32: metric) }
        if !smallTable { w.appendAttribute(RTA.table, u32: spec.table) }
        if let oif = spec.outputInterface { w.appendAttribute(RTA.oif, u32: oif) }
    }
}

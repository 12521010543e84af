import NetAddress

/// The kernel's routing tables as seen through one rtnetlink socket. Every operation is a
/// single request/ack exchange; each doc comment names the `ip` command it is equivalent to.
struct RouteTable {
    let socket: NetlinkSocket

    init(timeoutSeconds: Double = 5) throws(RouteError) {
        socket = try NetlinkSocket(timeoutSeconds: timeoutSeconds)
    }

    /// `ip -4 route show table all` / `ip -6 route show table all`: every route of one family
    /// in every table. A dump the kernel marks as interrupted (the table changed while it was
    /// being read) is retried, at most three times.
    func list(_ family: IPAddress.Family) throws(RouteError) -> [KernelRoute] {
        let operation = family == .v4 ? "ip -4 route show table all" : "ip -6 route show table all"
        for attempt in 1...3 {
            let reply = try socket.exchange(operation: operation, isDump: true) { RouteMessage.dump(family: family, sequence: $0) }
            if reply.interrupted && attempt < 3 { continue }
            var routes: [KernelRoute] = []
            for m in reply.messages where m.header.type == NL.MessageType.newRoute {
                do {
                    if let r = try NetlinkParser.route(m) { routes.append(r) }
                } catch {
                    throw .malformedReply(operation: operation, error)
                }
            }
            return routes
        }
        return []
    }

    /// Both families.
    func listAll() throws(RouteError) -> [KernelRoute] {
        try list(.v4) + list(.v6)
    }

    /// `ip route add DST [via GW] [table T] [dev IFACE] proto kubebridge` (fails if it exists).
    func add(_ spec: RouteSpec) throws(RouteError) {
        _ = try socket.exchange(operation: "ip route add \(describe(spec))", isDump: false) { RouteMessage.add(spec, sequence: $0) }
    }

    /// `ip route replace DST [via GW] [metric M] [table T] [dev IFACE] proto kubebridge`
    func replace(_ spec: RouteSpec) throws(RouteError) {
        _ = try socket.exchange(operation: "ip route replace \(describe(spec))", isDump: false) { RouteMessage.replace(spec, sequence: $0) }
    }

    /// `ip route del DST [via GW] [metric M] [table T] [dev IFACE] proto kubebridge`
    ///
    /// Refuses before sending anything when the route is not kubebridge's; the request also
    /// carries the protocol id so the kernel refuses too if the route changed meanwhile.
    func delete(_ route: KernelRoute) throws(RouteError) {
        guard route.isKubebridge else { throw .notOwned(RoutePresenter.describe(route)) }
        let spec = RouteSpec(destination: route.destination, gateway: route.gateway, outputInterface: route.outputInterface,
                             table: route.table, protocolID: RouteProtocol.kubebridge, priority: route.priority)
        _ = try socket.exchange(operation: "ip route del \(describe(spec))", isDump: false) { RouteMessage.delete(spec, sequence: $0) }
    }

    private func describe(_ s: RouteSpec) -> String {
        var text = s.destination.description
        if let g = s.gateway { text += " via \(g)" }
        if let m = s.priority { text += " metric \(m)" }
        text += " table \(RoutePresenter.tableName(s.table))"
        if let oif = s.outputInterface { text += " dev \(Sys.interfaceName(oif) ?? "#\(oif)")" }
        return text + " proto \(RouteProtocol.name)"
    }
}

import NetAddress

/// What a `kubebridge routes` command printed and how it should exit.
public struct RouteReport: Sendable {
    public var lines: [String] = []
    /// Lines for stderr: conflicts and errors, so scripts and systemd's journal see them.
    public var errors: [String] = []
    public var exitCode: Int32 = RouteExitCode.ok

    public var text: String { lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n" }
}

/// Exit statuses of `kubebridge routes`, documented in README.md, section "Gateway node".
public enum RouteExitCode {
    public static let ok: Int32 = 0
    /// A netlink, sysctl or file operation failed.
    public static let failure: Int32 = 1
    /// A route to a configured prefix belongs to someone else; nothing was changed.
    public static let conflict: Int32 = 3
    /// A gateway check found an error (CIDR overlapping an office subnet); nothing was changed.
    public static let checkFailed: Int32 = 4
}

/// `kubebridge routes plan|apply|show|withdraw`, and `--watch`.
public final class RouteManager {
    let configuration: RoutesConfiguration
    let sysctl: SysctlStore
    let dropIn: SysctlDropIn
    /// Firewall probing runs external tools; tests of the rest can turn it off.
    var probeFirewall = true

    public init(configuration: RoutesConfiguration) {
        self.configuration = configuration
        sysctl = SysctlStore(root: configuration.procSysRoot)
        dropIn = SysctlDropIn(directory: configuration.sysctlDirectory)
    }

    struct SysctlChange: Equatable {
        var key: SysctlKey
        var current: String
    }

    /// Everything `plan` shows and `apply` acts on, computed from one dump.
    struct Prepared {
        var desired: [(DesiredRoute, RouteSpec)]
        var plan: RoutePlan
        var sysctlChanges: [SysctlChange]
        var forwardingKeys: [SysctlKey]
        var dropInUpToDate: Bool
        var findings: [GatewayFinding]
    }

    func prepare(_ table: RouteTable, withChecks: Bool) throws(RouteError) -> Prepared {
        let wanted = try configuration.desiredRoutes()
        var oif: UInt32?
        if let dev = configuration.device {
            guard let index = Sys.interfaceIndex(dev) else { throw .unknownInterface(dev) }
            oif = index
        }
        let desired = wanted.map { w in
            (w, RouteSpec(destination: w.destination, gateway: w.gateway, outputInterface: oif, table: configuration.table))
        }
        let current = try table.listAll()
        let plan = RoutePlanner.plan(desired: desired, current: current, adopt: configuration.adopt)

        var keys: [SysctlKey] = [.ipv4Forward]
        if wanted.contains(where: { $0.destination.address.family == .v6 }) { keys.append(.ipv6Forward) }
        var changes: [SysctlChange] = []
        for k in keys {
            let value: String?
            do { value = try sysctl.read(k) } catch { throw .system(error) }
            guard let v = value else {
                throw .invalidConfiguration("\(sysctl.path(k)) does not exist: is IPv6 disabled on this host?")
            }
            if v != "1" { changes.append(SysctlChange(key: k, current: v)) }
        }
        let dropInUpToDate = (try? Sys.readFile(dropIn.path)).flatMap { $0 } == Array(SysctlDropIn.contents(keys).utf8)

        var findings: [GatewayFinding] = []
        if withChecks {
            var facts = GatewayFacts()
            facts.connected = current.filter {
                $0.table == RTTable.main && $0.protocolID == RTProt.kernel && $0.scope == RTScope.link && $0.type == RTN.unicast
            }
            facts.rpFilter["all"] = sysctl.readInt(.rpFilter("all")) ?? 0
            for c in facts.connected {
                guard let i = c.outputInterface, let name = Sys.interfaceName(i) else { continue }
                if c.family == .v4 {
                    facts.rpFilter[name] = sysctl.readInt(.rpFilter(name)) ?? 0
                } else if !name.isEmpty {
                    facts.acceptRA[name] = sysctl.readInt(.acceptRA(name)) ?? 0
                }
            }
            facts.ipv6ForwardingOn = sysctl.readInt(.ipv6Forward) == 1
            if probeFirewall { facts.firewall = FirewallProbe.gather(ipv6: keys.contains(.ipv6Forward)) }
            findings = GatewayChecks.run(configuration: configuration, desired: wanted, facts: facts)
        }
        return Prepared(desired: desired, plan: plan, sysctlChanges: changes, forwardingKeys: keys,
                        dropInUpToDate: dropInUpToDate, findings: findings)
    }

    private func header() -> String {
        "kubebridge routes: table \(RoutePresenter.tableName(configuration.table)), route protocol \(RouteProtocol.name) (\(RouteProtocol.kubebridge))"
    }

    private func describe(_ p: Prepared, into r: inout RouteReport) {
        r.lines.append("sysctl:")
        for k in p.forwardingKeys {
            if let c = p.sysctlChanges.first(where: { $0.key == k }) {
                r.lines.append("  change   \(k) \(c.current) -> 1")
            } else {
                r.lines.append("  keep     \(k) = 1")
            }
        }
        r.lines.append(p.dropInUpToDate ? "  keep     \(dropIn.path)" : "  write    \(dropIn.path)")
        r.lines.append("routes:")
        let routeLines = RoutePresenter.render(p.plan)
        r.lines += routeLines.isEmpty ? ["  (none)"] : routeLines
        if !p.findings.isEmpty {
            r.lines.append("checks:")
            for f in p.findings { r.lines += RoutePresenter.render(f) }
        }
        for c in p.plan.conflicts { r.errors.append("error: " + RoutePresenter.conflictMessage(c)) }
        for f in p.findings where f.severity == .error { r.errors.append("error: \(f.message)") }
    }

    private func exitCode(_ p: Prepared) -> Int32 {
        if !p.plan.conflicts.isEmpty { return RouteExitCode.conflict }
        if p.findings.contains(where: { $0.severity == .error }) { return RouteExitCode.checkFailed }
        return RouteExitCode.ok
    }

    private func summary(_ p: Prepared) -> String {
        let changes = p.plan.changes
        func count(_ f: (RouteAction) -> Bool) -> Int { changes.filter(f).count }
        let adds = count { if case .add = $0 { return true }; return false }
        let replaces = count { if case .replace = $0 { return true }; if case .adopt = $0 { return true }; return false }
        let removes = count { if case .remove = $0 { return true }; return false }
        let keeps = p.plan.actions.count - changes.count
        return "\(adds) to add, \(replaces) to replace, \(removes) to remove, \(keeps) unchanged, "
            + "\(p.sysctlChanges.count) sysctl change(s), \(p.plan.conflicts.count) conflict(s)"
    }

    /// `kubebridge routes plan`: what `apply` would do. Changes nothing.
    public func plan() throws(RouteError) -> RouteReport {
        let table = try RouteTable()
        let p = try prepare(table, withChecks: true)
        var r = RouteReport()
        r.lines.append(header())
        describe(p, into: &r)
        r.lines.append("plan: " + summary(p))
        r.exitCode = exitCode(p)
        if r.exitCode == RouteExitCode.conflict {
            r.lines.append("apply would refuse: resolve the conflicts above or pass --adopt")
        }
        return r
    }

    /// `kubebridge routes apply`: forwarding on (now and persisted), routes installed.
    /// Refuses to change anything while there is a conflict or a check error.
    public func apply() throws(RouteError) -> RouteReport {
        let table = try RouteTable()
        let p = try prepare(table, withChecks: true)
        var r = RouteReport()
        r.lines.append(header())
        describe(p, into: &r)
        r.exitCode = exitCode(p)
        guard r.exitCode == RouteExitCode.ok else {
            r.lines.append("nothing was changed")
            return r
        }
        do {
            let changed = try execute(p, table: table, log: { r.lines.append($0) })
            r.lines.append(changed ? "applied: " + summary(p) : "nothing to change: routes and sysctls are already as configured")
        } catch {
            // Keep what was printed so far: the administrator needs to see what did change.
            r.lines.append("stopped at the first failure; changes listed above stay (`kubebridge routes withdraw` undoes them)")
            r.errors.append("error: \(error)")
            r.exitCode = RouteExitCode.failure
        }
        return r
    }

    /// Carries out a prepared plan. Returns whether anything changed.
    func execute(_ p: Prepared, table: RouteTable, log: (String) -> Void) throws(RouteError) -> Bool {
        var changed = false
        do {
            // Record first, flip second: if we crash in between, withdraw still knows.
            if !p.sysctlChanges.isEmpty {
                var state = try RouteState.load(directory: configuration.stateDirectory) ?? RouteState()
                for c in p.sysctlChanges where !state.enabledByKubebridge.contains(c.key) {
                    state.enabledByKubebridge.append(c.key)
                }
                try state.save(directory: configuration.stateDirectory)
                for c in p.sysctlChanges {
                    try sysctl.write(c.key, "1")
                    log("  set      \(c.key) = 1 (was \(c.current))")
                    changed = true
                }
            }
            if try dropIn.install(p.forwardingKeys) {
                log("  wrote    \(dropIn.path)")
                changed = true
            }
        } catch {
            throw .system(error)
        }
        for a in p.plan.actions {
            switch a {
            case .keep:
                continue
            case let .remove(existing):
                try table.delete(existing)
                log("  removed  " + RoutePresenter.describe(existing))
            case let .add(spec, want):
                try table.add(spec)
                log("  added    " + RoutePresenter.describe(spec, want))
            case let .replace(spec, _, want):
                try table.replace(spec)
                log("  replaced " + RoutePresenter.describe(spec, want))
            case let .adopt(spec, existing, want):
                try table.replace(spec)
                log("  adopted  " + RoutePresenter.describe(spec, want) + " (was " + RoutePresenter.describe(existing) + ")")
            }
            changed = true
        }
        return changed
    }

    /// `kubebridge routes withdraw`: deletes every route carrying kubebridge's protocol id (in
    /// any table — what `ip route show table all proto kubebridge` lists), turns forwarding
    /// back off only where the state file says kubebridge turned it on, and removes the drop-in.
    /// Needs no configuration: ownership is in the routes and the state file.
    public func withdraw() throws(RouteError) -> RouteReport {
        let table = try RouteTable()
        var r = RouteReport()
        r.lines.append("kubebridge routes withdraw: removing routes with protocol \(RouteProtocol.name) (\(RouteProtocol.kubebridge))")
        let owned = try table.listAll().filter(\.isKubebridge)
        for route in owned {
            try table.delete(route)
            r.lines.append("  removed  " + RoutePresenter.describe(route))
        }
        if owned.isEmpty { r.lines.append("  no kubebridge routes installed") }
        do {
            if let state = try RouteState.load(directory: configuration.stateDirectory) {
                for k in state.enabledByKubebridge {
                    if try sysctl.read(k) == "1" {
                        try sysctl.write(k, "0")
                        r.lines.append("  set      \(k) = 0 (kubebridge had turned it on)")
                    }
                }
                try RouteState.remove(directory: configuration.stateDirectory)
            } else {
                r.lines.append("  forwarding left as it is (kubebridge did not turn it on)")
            }
            if try dropIn.remove() { r.lines.append("  removed  \(dropIn.path)") }
        } catch {
            throw .system(error)
        }
        return r
    }

    /// `kubebridge routes show`: kubebridge's routes and the sysctls that matter for routing.
    public func show() throws(RouteError) -> RouteReport {
        let table = try RouteTable()
        var r = RouteReport()
        let owned = try table.listAll().filter(\.isKubebridge)
        r.lines.append("routes with protocol \(RouteProtocol.name) (\(RouteProtocol.kubebridge)):")
        r.lines += owned.isEmpty ? ["  (none)"] : owned.map { "  " + RoutePresenter.describe($0) }
        r.lines.append("sysctl:")
        let state = (try? RouteState.load(directory: configuration.stateDirectory)) ?? nil
        for k in [SysctlKey.ipv4Forward, .ipv6Forward, .rpFilter("all")] {
            let v = (try? sysctl.read(k)).flatMap { $0 } ?? "(absent)"
            let mark = state?.enabledByKubebridge.contains(k) == true ? "  (turned on by kubebridge)" : ""
            r.lines.append("  \(k) = \(v)\(mark)")
        }
        r.lines.append("persisted: " + (dropIn.isInstalled() ? dropIn.path : "no drop-in in \(configuration.sysctlDirectory)"))
        return r
    }

    // MARK: --watch

    /// `kubebridge routes apply --watch`: apply, then keep kubebridge's routes in place.
    /// Listens to route, address and link notifications (a link going down flushes its IPv4
    /// routes without a per-route notification, hence the link group) and re-applies after a
    /// short quiet period; a full resync runs every `resyncSeconds` in case notifications were
    /// lost. Returns when `shouldStop` says so (SIGTERM/SIGINT).
    public func watch(resyncSeconds: Double = 30, shouldStop: () -> Bool, log: (String) -> Void) throws(RouteError) -> Int32 {
        let first = try apply()
        first.lines.forEach(log)
        first.errors.forEach(log)
        guard first.exitCode == RouteExitCode.ok else { return first.exitCode }

        let groups: UInt32 = 0x1 /* LINK */ | 0x10 /* IPV4_IFADDR */ | NL.Group.ipv4Route | 0x100 /* IPV6_IFADDR */ | NL.Group.ipv6Route
        let listener = try NetlinkSocket(groups: groups)
        let table = try RouteTable()
        let keys = Set(try configuration.desiredRoutes().map { RoutePlanner.RouteKey($0.destination, configuration.table) })
        log("watching route changes (resync every \(Int(resyncSeconds)) s); stop with SIGTERM")

        var dirtySince: Double?
        var nextResync = Sys.monotonicSeconds() + resyncSeconds
        var failures = 0
        while !shouldStop() {
            switch try listener.receiveNotifications(timeoutMilliseconds: 250) {
            case .nothing:
                break
            case .overflow:
                dirtySince = dirtySince ?? Sys.monotonicSeconds()
            case .messages(let ms):
                for m in ms where WatchFilter.concerns(m, keys: keys) {
                    dirtySince = dirtySince ?? Sys.monotonicSeconds()
                }
            }
            let now = Sys.monotonicSeconds()
            let quiet = dirtySince.map { now - $0 >= 0.2 } ?? false
            guard quiet || now >= nextResync else { continue }
            dirtySince = nil
            nextResync = now + resyncSeconds
            do {
                let p = try prepare(table, withChecks: false)
                for c in p.plan.conflicts { log("warning: " + RoutePresenter.conflictMessage(c)) }
                if !p.plan.changes.isEmpty || !p.sysctlChanges.isEmpty || !p.dropInUpToDate {
                    log("re-applying:")
                    _ = try execute(p, table: table, log: log)
                }
                failures = 0
            } catch {
                failures += 1
                log("warning: re-apply failed (\(failures) in a row), retrying in \(Int(min(resyncSeconds, 5))) s: \(error)")
                nextResync = Sys.monotonicSeconds() + min(resyncSeconds, 5)
            }
        }
        log("stopped watching; routes stay installed (run `kubebridge routes withdraw` to remove them)")
        return RouteExitCode.ok
    }
}

/// Which notifications mean "look again". Our own route additions echo back as
/// RTM_NEWROUTE with our protocol id; those are ignored so a re-apply does not trigger itself.
enum WatchFilter {
    static func concerns(_ m: NetlinkMessage, keys: Set<RoutePlanner.RouteKey>) -> Bool {
        switch m.header.type {
        case NL.MessageType.newRoute, NL.MessageType.delRoute:
            guard let r = try? NetlinkParser.route(m) else { return false }
            guard keys.contains(RoutePlanner.RouteKey(r.destination, r.table)) else { return false }
            return m.header.type == NL.MessageType.delRoute || !r.isKubebridge
        case 16, 17: // RTM_NEWLINK, RTM_DELLINK
            return true
        case 20, 21: // RTM_NEWADDR, RTM_DELADDR
            return true
        default:
            return false
        }
    }
}

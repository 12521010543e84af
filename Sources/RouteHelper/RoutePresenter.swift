import NetAddress

/// Prints routes, plans and findings the way an administrator used to `ip route` reads them.
enum RoutePresenter {
    static func tableName(_ t: UInt32) -> String {
        switch t {
        case 253: return "default"
        case 254: return "main"
        case 255: return "local"
        default: return String(t)
        }
    }

    static func describe(_ r: KernelRoute, withProtocol: Bool = true,
                         interfaceName: (UInt32) -> String? = { Sys.interfaceName($0) }) -> String {
        var s = r.destination.description
        switch r.type {
        case RTN.unicast: break
        case RTN.blackhole: s = "blackhole " + s
        case RTN.local: s = "local " + s
        default: s = "type \(r.type) " + s
        }
        if let g = r.gateway { s += " via \(g)" }
        if r.isMultipath { s += " (multipath)" }
        if let oif = r.outputInterface { s += " dev \(interfaceName(oif) ?? "#\(oif)")" }
        if r.table != RTTable.main { s += " table \(tableName(r.table))" }
        if withProtocol { s += " proto \(RouteProtocol.describe(r.protocolID))" }
        if let m = r.priority, m != 0 { s += " metric \(m)" }
        return s
    }

    static func describe(_ spec: RouteSpec, _ want: DesiredRoute) -> String {
        var s = spec.destination.description
        if let g = spec.gateway { s += " via \(g)" }
        if let d = want.device { s += " dev \(d)" }
        if spec.table != RTTable.main { s += " table \(tableName(spec.table))" }
        return s
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }

    static func render(_ plan: RoutePlan, interfaceName: (UInt32) -> String? = { Sys.interfaceName($0) }) -> [String] {
        var lines: [String] = []
        for a in plan.actions {
            switch a {
            case let .add(spec, want):
                lines.append("  add      " + pad(describe(spec, want), 44) + want.origin.rawValue)
            case let .replace(spec, existing, want):
                lines.append("  replace  " + pad(describe(spec, want), 44) + "\(want.origin.rawValue); kubebridge's route is now "
                             + describe(existing, interfaceName: interfaceName))
            case let .adopt(spec, existing, want):
                lines.append("  adopt    " + pad(describe(spec, want), 44) + "\(want.origin.rawValue); takes over "
                             + describe(existing, interfaceName: interfaceName) + " (--adopt)")
            case let .keep(existing, want):
                lines.append("  keep     " + pad(describe(existing, interfaceName: interfaceName), 44) + "\(want.origin.rawValue); already installed")
            case let .remove(existing):
                lines.append("  remove   " + pad(describe(existing, interfaceName: interfaceName), 44) + "kubebridge's, no longer configured")
            }
        }
        for c in plan.conflicts {
            lines.append("  CONFLICT " + pad(describe(c.existing, interfaceName: interfaceName), 44)
                         + "not kubebridge's; wanted for \(c.desired.origin.rawValue) \(c.desired)")
        }
        for l in plan.leftAlone {
            lines.append("  leave    " + pad(describe(l.route, interfaceName: interfaceName), 44) + l.reason)
        }
        return lines
    }

    /// The sentence the issue asks for, one per conflict, for stderr.
    static func conflictMessage(_ c: RouteConflict, interfaceName: (UInt32) -> String? = { Sys.interfaceName($0) }) -> String {
        "route \(describe(c.existing, withProtocol: false, interfaceName: interfaceName)) exists with proto "
            + "\(RouteProtocol.describe(c.existing.protocolID)), not kubebridge's; \(c.reason)"
    }

    static func render(_ f: GatewayFinding) -> [String] {
        var lines = ["  \(f.severity.rawValue): \(f.message)"]
        if let fix = f.fix { lines.append("    fix: \(fix)") }
        return lines
    }
}

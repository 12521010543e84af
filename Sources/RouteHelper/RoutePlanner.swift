import NetAddress

/// One thing `apply` will do (or found already done) to a route.
enum RouteAction: Equatable {
    case add(RouteSpec, DesiredRoute)
    /// kubebridge's own route to this prefix, with another next hop: replace it in place.
    case replace(RouteSpec, existing: KernelRoute, DesiredRoute)
    /// Someone else's route to this prefix, handed over by `--adopt`.
    case adopt(RouteSpec, existing: KernelRoute, DesiredRoute)
    case keep(KernelRoute, DesiredRoute)
    /// kubebridge's route that is no longer configured.
    case remove(KernelRoute)

    var changesSomething: Bool {
        if case .keep = self { return false }
        return true
    }
}

/// A route to a configured prefix that kubebridge did not create. Never touched without `--adopt`.
struct RouteConflict: Equatable {
    var desired: DesiredRoute
    var existing: KernelRoute
    var reason: String
}

/// A foreign route that overlaps a configured prefix without being the same prefix: it is
/// reported so the administrator sees who carries which range, and never touched.
struct LeftAloneRoute: Equatable {
    var route: KernelRoute
    var reason: String
}

struct RoutePlan: Equatable {
    var actions: [RouteAction] = []
    var conflicts: [RouteConflict] = []
    var leftAlone: [LeftAloneRoute] = []

    var changes: [RouteAction] { actions.filter(\.changesSomething) }
}

/// Compares what is configured with what the kernel has. Pure: the dump comes in, the plan
/// goes out, so every ownership rule is unit-tested without a kernel.
enum RoutePlanner {
    static func plan(desired: [(DesiredRoute, RouteSpec)], current: [KernelRoute], adopt: Bool) -> RoutePlan {
        var plan = RoutePlan()
        var wantedKeys = Set<RouteKey>()
        for (want, spec) in desired {
            wantedKeys.insert(RouteKey(spec.destination, spec.table))
            let samePrefix = current.filter {
                $0.destination == spec.destination && $0.table == spec.table && $0.tos == 0 && $0.sourceLength == 0
            }
            let owned = samePrefix.filter(\.isKubebridge)
            let foreign = samePrefix.filter { !$0.isKubebridge }

            if !foreign.isEmpty {
                if adopt && owned.isEmpty && foreign.count == 1 && !foreign[0].isMultipath {
                    var s = spec
                    s.priority = foreign[0].priority
                    plan.actions.append(.adopt(s, existing: foreign[0], want))
                } else {
                    for f in foreign {
                        let reason: String
                        if !adopt {
                            reason = "pass --adopt to take it over"
                        } else if f.isMultipath {
                            reason = "it is a multipath route; --adopt only takes over single next-hop routes"
                        } else {
                            reason = "there are several routes to this prefix; remove the extra ones by hand first"
                        }
                        plan.conflicts.append(RouteConflict(desired: want, existing: f, reason: reason))
                    }
                }
                // Our own duplicates of a conflicting prefix stay until the conflict is resolved.
                continue
            }
            guard let first = owned.first else {
                plan.actions.append(.add(spec, want))
                continue
            }
            if let same = owned.first(where: { sameNextHop($0, spec) }) {
                plan.actions.append(.keep(same, want))
                for extra in owned where extra != same { plan.actions.append(.remove(extra)) }
            } else {
                var s = spec
                s.priority = first.priority
                plan.actions.append(.replace(s, existing: first, want))
                for extra in owned.dropFirst() { plan.actions.append(.remove(extra)) }
            }
        }
        // kubebridge's routes that nothing configured asks for any more.
        for r in current where r.isKubebridge && !wantedKeys.contains(RouteKey(r.destination, r.table)) {
            plan.actions.append(.remove(r))
        }
        // Foreign routes overlapping a configured prefix, in the same table.
        let conflicting = Set(plan.conflicts.map { RouteKey($0.existing.destination, $0.existing.table) })
        for r in current where !r.isKubebridge && r.destination.prefix > 0 && r.type == RTN.unicast {
            let key = RouteKey(r.destination, r.table)
            if conflicting.contains(key) || wantedKeys.contains(key) { continue }
            guard let d = desired.first(where: { $0.1.table == r.table && $0.1.destination.overlaps(r.destination) }) else { continue }
            let reason = r.destination.prefix > d.1.destination.prefix
                ? "more specific than \(d.1.destination): it keeps carrying its own range (longest prefix wins)"
                : "covers \(d.1.destination): kubebridge's more specific route takes precedence there"
            plan.leftAlone.append(LeftAloneRoute(route: r, reason: reason))
        }
        return plan
    }

    static func sameNextHop(_ r: KernelRoute, _ s: RouteSpec) -> Bool {
        r.type == RTN.unicast && !r.isMultipath && r.gateway == s.gateway
            && (s.outputInterface == nil || r.outputInterface == s.outputInterface)
            && (s.priority == nil || r.priority == s.priority)
    }

    struct RouteKey: Hashable {
        var destination: CIDR
        var table: UInt32
        init(_ d: CIDR, _ t: UInt32) { destination = d; table = t }
    }
}

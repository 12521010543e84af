// swift-tools-version:5.10
import PackageDescription

/// Release builds of the hot-path targets drop Swift's dynamic exclusivity checks: the
/// per-packet code works on raw buffers owned by one worker thread, where the checks
/// cost measurable time and catch nothing (see bench/RESULTS.md).
let hotPath: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "kubebridge",
    products: [
        .executable(name: "kubebridge", targets: ["kubebridge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // libevent, wrapped as a system library (Debian: libevent-dev).
        .systemLibrary(name: "CLibevent", pkgConfig: "libevent_core", providers: [.apt(["libevent-dev"])]),
        // What Swift cannot see: recvmmsg/sendmmsg, CMSG_*, netlink macros.
        .target(name: "CShim"),
        // Addresses, prefixes and endpoints shared by the DNS and route sides. No dependencies.
        .target(name: "NetAddress"),
        // DNS wire format: bounded cursor, names, header, question, EDNS. No dependencies.
        .target(name: "DNSWire", swiftSettings: hotPath),
        // The response cache: wire-form answers, TTL ageing, eviction. Depends on the wire format only.
        .target(name: "PacketCache", dependencies: ["DNSWire"], swiftSettings: hotPath),
        // Zone routing and the upstream state machine, free of I/O: clock and randomness are passed in.
        .target(name: "Forwarding", dependencies: ["DNSWire", "PacketCache", "NetAddress"], swiftSettings: hotPath),
        // The only place that touches libevent and socket syscalls.
        .target(name: "EventLoop", dependencies: ["Forwarding", "DNSWire", "PacketCache", "NetAddress", "CShim", "CLibevent"],
                swiftSettings: hotPath),
        // rtnetlink route and sysctl management, and route announcements for office hosts.
        .target(name: "RouteHelper", dependencies: ["NetAddress", "CShim"]),
        // The configuration file (TOML subset) with file:line diagnostics.
        .target(name: "KubebridgeConfig", dependencies: ["NetAddress", "DNSWire", "Forwarding"]),
        .executableTarget(name: "kubebridge", dependencies: [
            "EventLoop", "Forwarding", "RouteHelper", "KubebridgeConfig", "NetAddress",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "NetAddressTests", dependencies: ["NetAddress"]),
        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire"], exclude: ["Seeds"]),
        .testTarget(name: "PacketCacheTests", dependencies: ["PacketCache", "DNSWire"]),
        .testTarget(name: "ForwardingTests", dependencies: ["Forwarding", "DNSWire", "PacketCache", "NetAddress"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "Forwarding", "NetAddress"]),
        .testTarget(name: "RouteHelperTests", dependencies: ["RouteHelper", "NetAddress", "CShim"], resources: [.copy("Seeds")]),
        .testTarget(name: "KubebridgeConfigTests", dependencies: ["KubebridgeConfig", "NetAddress", "Forwarding"], exclude: ["Seeds"]),
        .testTarget(name: "EndToEndTests", dependencies: [], exclude: ["Fixtures/fakedns.py", "Fixtures/musl_lookup.c.in", "Scripts"]),
    ]
)

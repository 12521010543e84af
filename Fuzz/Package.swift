// swift-tools-version:5.10
import PackageDescription

// libFuzzer targets for kubebridge. A separate package so that the normal build and test
// suite never see the fuzzer flags. The library targets are the main package's own source
// folders, reached through the symlinks in Fuzz/Sources (SwiftPM refuses target paths
// outside the package root), so the fuzzers always test the code in the checkout.
//
// Build with scripts/fuzz.sh, which runs:
//   swift build -c release --package-path Fuzz --scratch-path Fuzz/.build \
//       -Xswiftc -sanitize=fuzzer,address
// Every Swift module then carries SanitizerCoverage and ASan instrumentation. SwiftPM
// renames each executable's entry point (<Module>_main, aliased to main by the linker),
// which keeps libFuzzer's own main() out, so each harness's main.swift calls
// LLVMFuzzerRunDriver (declared in CFuzz) with its LLVMFuzzerTestOneInput function.

/// NetlinkParser is internal to RouteHelper; -enable-testing lets the netlink harness use
/// `@testable import` in a release build.
let testable: [SwiftSetting] = [.unsafeFlags(["-enable-testing"])]

let package = Package(
    name: "kubebridge-fuzz",
    targets: [
        .target(name: "CShim"),
        .target(name: "NetAddress"),
        .target(name: "DNSWire"),
        .target(name: "PacketCache", dependencies: ["DNSWire"]),
        .target(name: "Forwarding", dependencies: ["DNSWire", "PacketCache", "NetAddress"]),
        .target(name: "RouteHelper", dependencies: ["NetAddress", "CShim"], swiftSettings: testable),
        .target(name: "KubebridgeConfig", dependencies: ["NetAddress", "DNSWire", "Forwarding"]),
        .target(name: "CFuzz"),
        .target(name: "FuzzSupport", dependencies: ["DNSWire", "CFuzz"]),

        .executableTarget(name: "FuzzQuery", dependencies: ["DNSWire", "FuzzSupport"]),
        .executableTarget(name: "FuzzResponse", dependencies: ["DNSWire", "FuzzSupport"]),
        .executableTarget(name: "FuzzForwarder", dependencies: ["DNSWire", "PacketCache", "Forwarding", "NetAddress", "FuzzSupport"]),
        .executableTarget(name: "FuzzCache", dependencies: ["DNSWire", "PacketCache", "FuzzSupport"]),
        .executableTarget(name: "FuzzConfig", dependencies: ["KubebridgeConfig", "Forwarding", "FuzzSupport"]),
        .executableTarget(name: "FuzzNetlink", dependencies: ["RouteHelper", "NetAddress", "FuzzSupport"]),
    ]
)

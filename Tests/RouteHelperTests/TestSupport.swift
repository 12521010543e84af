import Foundation
import NetAddress
@testable import RouteHelper

/// "2c 00 00 00 …" → bytes. Whitespace and newlines are ignored.
func hex(_ s: String) -> [UInt8] {
    let digits = s.filter { !$0.isWhitespace }
    precondition(digits.count % 2 == 0, "odd hex string")
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func cidr(_ s: String) -> CIDR { try! CIDR(parsing: s) }
func ip(_ s: String) -> IPAddress { IPAddress(s)! }

func seed(_ name: String) throws -> [UInt8] {
    guard let url = Bundle.module.url(forResource: name, withExtension: "bin", subdirectory: "Seeds") else {
        throw NSError(domain: "seed", code: 1, userInfo: [NSLocalizedDescriptionKey: "missing seed \(name).bin"])
    }
    return Array(try Data(contentsOf: url))
}

func allSeedNames() -> [String] {
    guard let dir = Bundle.module.resourceURL?.appendingPathComponent("Seeds"),
          let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return [] }
    return names.filter { $0.hasSuffix(".bin") }.map { String($0.dropLast(4)) }.sorted()
}

func kernelRoute(_ dst: String, via: String? = nil, table: UInt32 = 254, proto: UInt8, oif: UInt32? = 3,
                 metric: UInt32? = nil, scope: UInt8 = 0, type: UInt8 = 1) -> KernelRoute {
    KernelRoute(destination: cidr(dst), table: table, protocolID: proto, scope: scope, type: type,
                gateway: via.map(ip), outputInterface: oif, priority: metric, preferredSource: nil)
}

/// Offsets, flag bits and codes of the 12-byte DNS header (RFC 1035 4.1.1, RFC 6895).
public enum Header {
    public static let size = 12
    public static let idOffset = 0
    public static let flagsOffset = 2
    public static let qdcountOffset = 4
    public static let ancountOffset = 6
    public static let nscountOffset = 8
    public static let arcountOffset = 10

    public static let qr: UInt16 = 0x8000
    public static let opcodeMask: UInt16 = 0x7800
    public static let aa: UInt16 = 0x0400
    public static let tc: UInt16 = 0x0200
    public static let rd: UInt16 = 0x0100
    public static let ra: UInt16 = 0x0080
    public static let z: UInt16 = 0x0040
    public static let ad: UInt16 = 0x0020
    public static let cd: UInt16 = 0x0010
    public static let rcodeMask: UInt16 = 0x000f

    @inlinable @inline(__always)
    public static func id(_ p: UnsafeRawPointer) -> UInt16 { Wire.u16(p, idOffset) }
    @inlinable @inline(__always)
    public static func flags(_ p: UnsafeRawPointer) -> UInt16 { Wire.u16(p, flagsOffset) }
    @inlinable @inline(__always)
    public static func count(_ p: UnsafeRawPointer, _ offset: Int) -> Int { Int(Wire.u16(p, offset)) }
}

public enum RCode: UInt16, Sendable {
    case noError = 0, formErr = 1, servFail = 2, nxDomain = 3, notImp = 4, refused = 5
    /// Extended (EDNS) rcode 16; the upper 8 bits travel in the OPT record.
    case badVers = 16
}

public enum RRType {
    public static let a: UInt16 = 1
    public static let ns: UInt16 = 2
    public static let cname: UInt16 = 5
    public static let soa: UInt16 = 6
    public static let ptr: UInt16 = 12
    public static let txt: UInt16 = 16
    public static let aaaa: UInt16 = 28
    public static let opt: UInt16 = 41
    public static let ixfr: UInt16 = 251
    public static let axfr: UInt16 = 252
}

import CShim
import NetAddress
@testable import RouteHelper
import XCTest

/// The builders against the bytes iproute2 6.1 sends for the same command, captured with
/// `strace -e trace=sendmsg -e write=3 ip …` in a private namespace where kbv0 is ifindex 3.
/// Sequence numbers are copied from the capture; everything else must match exactly.
final class NetlinkMessageTests: XCTestCase {
    let kbv0: UInt32 = 3

    func testAddViaGatewayMatchesIPRouteAdd() {
        // ip route add 172.20.0.0/16 via 10.77.0.2 proto 201
        let spec = RouteSpec(destination: cidr("172.20.0.0/16"), gateway: ip("10.77.0.2"))
        XCTAssertEqual(RouteMessage.add(spec, sequence: 0x6b02_6bd2), hex("""
            2c 00 00 00 18 00 05 06 d2 6b 02 6b 00 00 00 00
            02 10 00 00 fe c9 00 01 00 00 00 00 08 00 01 00
            ac 14 00 00 08 00 05 00 0a 4d 00 02
            """))
    }

    func testReplaceMatchesIPRouteReplace() {
        // ip route replace 172.20.0.0/16 via 10.77.0.3 proto 201
        let spec = RouteSpec(destination: cidr("172.20.0.0/16"), gateway: ip("10.77.0.3"))
        XCTAssertEqual(RouteMessage.replace(spec, sequence: 0x6b02_6bd2), hex("""
            2c 00 00 00 18 00 05 05 d2 6b 02 6b 00 00 00 00
            02 10 00 00 fe c9 00 01 00 00 00 00 08 00 01 00
            ac 14 00 00 08 00 05 00 0a 4d 00 03
            """))
    }

    func testDeviceRouteInLargeTableUsesRTATable() {
        // ip route add 172.21.0.0/16 dev kbv0 proto 201 table 1000
        let spec = RouteSpec(destination: cidr("172.21.0.0/16"), gateway: nil, outputInterface: kbv0, table: 1000)
        XCTAssertEqual(RouteMessage.add(spec, sequence: 0x6b02_6bd7), hex("""
            34 00 00 00 18 00 05 06 d7 6b 02 6b 00 00 00 00
            02 10 00 00 00 c9 fd 01 00 00 00 00 08 00 01 00
            ac 15 00 00 08 00 0f 00 e8 03 00 00 08 00 04 00
            03 00 00 00
            """))
    }

    func testDeleteMatchesIPRouteDelWithProto() {
        // ip route del 172.20.0.0/16 proto 201 table main
        let spec = RouteSpec(destination: cidr("172.20.0.0/16"), gateway: nil)
        XCTAssertEqual(RouteMessage.delete(spec, sequence: 0x6b02_6bd7), hex("""
            24 00 00 00 19 00 05 00 d7 6b 02 6b 00 00 00 00
            02 10 00 00 fe c9 ff 00 00 00 00 00 08 00 01 00
            ac 14 00 00
            """))
    }

    func testIPv6AddMatchesIP6RouteAdd() {
        // ip -6 route add fd00:20::/64 via fd00:77::2 proto 201 dev kbv0
        let spec = RouteSpec(destination: cidr("fd00:20::/64"), gateway: ip("fd00:77::2"), outputInterface: kbv0)
        XCTAssertEqual(RouteMessage.add(spec, sequence: 0x6b02_6bd7), hex("""
            4c 00 00 00 18 00 05 06 d7 6b 02 6b 00 00 00 00
            0a 40 00 00 fe c9 00 01 00 00 00 00 14 00 01 00
            fd 00 00 20 00 00 00 00 00 00 00 00 00 00 00 00
            14 00 05 00 fd 00 00 77 00 00 00 00 00 00 00 00
            00 00 00 02 08 00 04 00 03 00 00 00
            """))
    }

    func testMetricAddAndDelete() {
        // ip route add|del 10.96.0.0/12 via 10.77.0.2 dev kbv0 proto 201 metric 50
        let spec = RouteSpec(destination: cidr("10.96.0.0/12"), gateway: ip("10.77.0.2"), outputInterface: kbv0, priority: 50)
        let body = "0a 60 00 00 08 00 05 00 0a 4d 00 02 08 00 06 00 32 00 00 00 08 00 04 00 03 00 00 00"
        XCTAssertEqual(RouteMessage.add(spec, sequence: 0x6b02_6bd7),
                       hex("3c 00 00 00 18 00 05 06 d7 6b 02 6b 00 00 00 00 02 0c 00 00 fe c9 00 01 00 00 00 00 08 00 01 00" + body))
        XCTAssertEqual(RouteMessage.delete(spec, sequence: 0x6b02_6bd7),
                       hex("3c 00 00 00 19 00 05 00 d7 6b 02 6b 00 00 00 00 02 0c 00 00 fe c9 ff 00 00 00 00 00 08 00 01 00" + body))
    }

    func testAllAttributesInIPOrder() {
        // ip route add|del 172.20.3.0/24 via 10.77.0.3 metric 10 table 1000 dev kbv0 proto 201
        let spec = RouteSpec(destination: cidr("172.20.3.0/24"), gateway: ip("10.77.0.3"), outputInterface: kbv0,
                             table: 1000, priority: 10)
        let body = """
            08 00 01 00 ac 14 03 00 08 00 05 00 0a 4d 00 03 08 00 06 00
            0a 00 00 00 08 00 0f 00 e8 03 00 00 08 00 04 00 03 00 00 00
            """
        XCTAssertEqual(RouteMessage.add(spec, sequence: 0x6b02_6bdf),
                       hex("44 00 00 00 18 00 05 06 df 6b 02 6b 00 00 00 00 02 18 00 00 00 c9 00 01 00 00 00 00" + body))
        XCTAssertEqual(RouteMessage.delete(spec, sequence: 0x6b02_6bdf),
                       hex("44 00 00 00 19 00 05 00 df 6b 02 6b 00 00 00 00 02 18 00 00 00 c9 ff 00 00 00 00 00" + body))
    }

    func testDumpRequests() {
        // ip -4 route show table all / ip -6 route show table all (the 28 bytes nlmsg_len covers)
        XCTAssertEqual(RouteMessage.dump(family: .v4, sequence: 0x6b02_6bdf),
                       hex("1c 00 00 00 1a 00 01 03 df 6b 02 6b 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00"))
        XCTAssertEqual(RouteMessage.dump(family: .v6, sequence: 0x6b02_6bdf),
                       hex("1c 00 00 00 1a 00 01 03 df 6b 02 6b 00 00 00 00 0a 00 00 00 00 00 00 00 00 00 00 00"))
    }

    func testBuiltMessagesParseBack() throws {
        let spec = RouteSpec(destination: cidr("fd00:20::/64"), gateway: ip("fd00:77::2"), outputInterface: 7, table: 4242, priority: 99)
        let messages = try NetlinkParser.messages(in: RouteMessage.add(spec, sequence: 9))
        XCTAssertEqual(messages.count, 1)
        let r = try XCTUnwrap(try NetlinkParser.route(messages[0]))
        XCTAssertEqual(r.destination, spec.destination)
        XCTAssertEqual(r.gateway, spec.gateway)
        XCTAssertEqual(r.outputInterface, 7)
        XCTAssertEqual(r.table, 4242)
        XCTAssertEqual(r.priority, 99)
        XCTAssertEqual(r.protocolID, RouteProtocol.kubebridge)
    }
}

/// Every constant the Swift side spells out, against the kernel headers (through CShim).
final class NetlinkConstantsTests: XCTestCase {
    func c(_ name: String) -> Int { kb_netlink_constant(name) }

    func testConstantsMatchKernelHeaders() {
        let table: [(String, Int)] = [
            ("NETLINK_ROUTE", Int(NL.protocolRoute)), ("SOL_NETLINK", Int(NL.SocketOption.level)),
            ("NETLINK_EXT_ACK", Int(NL.SocketOption.extendedAck)), ("NETLINK_CAP_ACK", Int(NL.SocketOption.capAck)),
            ("NETLINK_GET_STRICT_CHK", Int(NL.SocketOption.strictCheck)),
            ("NLMSG_NOOP", Int(NL.MessageType.noop)), ("NLMSG_ERROR", Int(NL.MessageType.error)),
            ("NLMSG_DONE", Int(NL.MessageType.done)), ("NLMSG_OVERRUN", Int(NL.MessageType.overrun)),
            ("NLM_F_REQUEST", Int(NL.Flag.request)), ("NLM_F_MULTI", Int(NL.Flag.multi)), ("NLM_F_ACK", Int(NL.Flag.ack)),
            ("NLM_F_DUMP_INTR", Int(NL.Flag.dumpInterrupted)), ("NLM_F_DUMP", Int(NL.Flag.dump)),
            ("NLM_F_REPLACE", Int(NL.Flag.replace)), ("NLM_F_EXCL", Int(NL.Flag.exclusive)), ("NLM_F_CREATE", Int(NL.Flag.create)),
            ("NLM_F_CAPPED", Int(NL.Flag.capped)), ("NLM_F_ACK_TLVS", Int(NL.Flag.ackTLVs)),
            ("NLMSGERR_ATTR_MSG", Int(NL.ErrorAttribute.message)), ("NLMSGERR_ATTR_OFFS", Int(NL.ErrorAttribute.offset)),
            ("RTM_NEWROUTE", Int(NL.MessageType.newRoute)), ("RTM_DELROUTE", Int(NL.MessageType.delRoute)),
            ("RTM_GETROUTE", Int(NL.MessageType.getRoute)),
            ("RTA_DST", Int(RTA.dst)), ("RTA_SRC", Int(RTA.src)), ("RTA_OIF", Int(RTA.oif)), ("RTA_GATEWAY", Int(RTA.gateway)),
            ("RTA_PRIORITY", Int(RTA.priority)), ("RTA_PREFSRC", Int(RTA.prefsrc)), ("RTA_MULTIPATH", Int(RTA.multipath)),
            ("RTA_TABLE", Int(RTA.table)), ("RTA_VIA", Int(RTA.via)),
            ("RTN_UNSPEC", Int(RTN.unspec)), ("RTN_UNICAST", Int(RTN.unicast)), ("RTN_LOCAL", Int(RTN.local)),
            ("RTN_BLACKHOLE", Int(RTN.blackhole)),
            ("RT_SCOPE_UNIVERSE", Int(RTScope.universe)), ("RT_SCOPE_LINK", Int(RTScope.link)),
            ("RT_SCOPE_HOST", Int(RTScope.host)), ("RT_SCOPE_NOWHERE", Int(RTScope.nowhere)),
            ("RT_TABLE_UNSPEC", Int(RTTable.unspec)), ("RT_TABLE_MAIN", Int(RTTable.main)), ("RT_TABLE_LOCAL", Int(RTTable.local)),
            ("RTPROT_KERNEL", Int(RTProt.kernel)), ("RTPROT_BOOT", Int(RTProt.boot)), ("RTPROT_STATIC", Int(RTProt.static)),
            ("RTMGRP_IPV4_ROUTE", Int(NL.Group.ipv4Route)), ("RTMGRP_IPV6_ROUTE", Int(NL.Group.ipv6Route)),
            ("sizeof(struct nlmsghdr)", NL.headerSize), ("sizeof(struct rtmsg)", NL.rtmsgSize),
            ("sizeof(struct rtattr)", 4), ("sizeof(struct nlmsgerr)", 4 + NL.headerSize),
        ]
        for (name, swiftValue) in table {
            XCTAssertEqual(c(name), swiftValue, name)
        }
        XCTAssertEqual(c("NO_SUCH_CONSTANT"), -1)
    }

    /// kubebridge's id must not be one the system already names.
    func testProtocolIDIsUnusedAndDocumented() throws {
        XCTAssertFalse([0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 42, 80, 99].contains(Int(RouteProtocol.kubebridge)))
        XCTAssertFalse((186...198).contains(Int(RouteProtocol.kubebridge)))
        if let system = try? String(contentsOfFile: "/etc/iproute2/rt_protos", encoding: .utf8) {
            for line in system.split(separator: "\n") where !line.hasPrefix("#") {
                let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if let n = fields.first.flatMap({ Int($0) }) {
                    XCTAssertNotEqual(n, Int(RouteProtocol.kubebridge), "iproute2 already names \(n): \(line)")
                }
            }
        }
        // The shipped iproute2 file names the same number.
        let conf = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("conf/rt_protos.d/kubebridge.conf")
        let text = try String(contentsOf: conf, encoding: .utf8)
        let entries = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        XCTAssertEqual(entries.map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) },
                       [[String(RouteProtocol.kubebridge), RouteProtocol.name]])
    }
}

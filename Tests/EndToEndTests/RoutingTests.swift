import XCTest

/// Zone routing: cluster zone and CIDR reverse zones to the cluster DNS, `--forward`
/// zones to their servers, the rest upstream; longest suffix on label boundaries,
/// case-insensitively. The upstream stand-in serves different data for names inside
/// the cluster zones, so a misrouted query shows as a wrong address, not a timeout.
final class RoutingTests: EndToEndTestCase {
    func testClusterNamesGoToClusterDNS() throws {
        let kb = try startKubebridgeWithKnots()
        let web = try dig(kb, "web.prod.svc.cluster.local")
        assertAnswer(web, "A", ["172.21.0.10"])   // upstream would say 198.51.100.66
        XCTAssertTrue(web.flags.contains("qr"), "\(web)")
        assertAnswer(try dig(kb, "kubernetes.default.svc.cluster.local"), "A", ["172.21.0.1"])

        let apex = try dig(kb, "cluster.local", "SOA")
        XCTAssertEqual(apex.status, "NOERROR", "\(apex)")
        XCTAssertTrue(apex.rdata("SOA").first?.hasPrefix("ns.cluster.local.") ?? false, "zone apex must route to cluster DNS: \(apex)")

        let missing = try dig(kb, "nosuch.svc.cluster.local")
        XCTAssertEqual(missing.status, "NXDOMAIN", "\(missing)")

        // A name with an A record and no AAAA: NODATA, not an error.
        let noAAAA = try dig(kb, "v4only.prod.svc.cluster.local", "AAAA")
        XCTAssertEqual(noAAAA.status, "NOERROR", "\(noAAAA)")
        XCTAssertTrue(noAAAA.answers.isEmpty, "\(noAAAA)")
        assertAnswer(try dig(kb, "dual.prod.svc.cluster.local", "AAAA"), "AAAA", ["fd00:21::30"])
    }

    func testPublicNamesGoUpstream() throws {
        let kb = try startKubebridgeWithKnots()
        assertAnswer(try dig(kb, "www.example.test"), "A", ["198.51.100.10"])
        let missing = try dig(kb, "nosuch.example.test")
        XCTAssertEqual(missing.status, "NXDOMAIN", "\(missing)")
    }

    func testSuffixMatchStopsAtLabelBoundaries() throws {
        let kb = try startKubebridgeWithKnots()
        // Ends in "cluster.local" as a string, not on a label boundary: upstream.
        assertAnswer(try dig(kb, "notcluster.local"), "A", ["198.51.100.7"])
        // Contains "cluster.local" but does not end in it: upstream.
        assertAnswer(try dig(kb, "cluster.local.example.test"), "A", ["198.51.100.8"])
        assertAnswer(try dig(kb, "web.prod.svc.cluster.local.example.test"), "A", ["198.51.100.9"])
    }

    func testZoneMatchIsCaseInsensitiveAndQuestionCaseIsEchoed() throws {
        let kb = try startKubebridgeWithKnots()
        let mixed = "WEB.Prod.SVC.Cluster.LOCAL."
        let viaDig = try dig(kb, mixed)
        assertAnswer(viaDig, "A", ["172.21.0.10"])
        XCTAssertEqual(viaDig.questionName, mixed, "question case must be echoed exactly: \(viaDig)")

        for (id, name, expected) in [(UInt16(0xBEEF), mixed, "172.21.0.10"),
                                     (UInt16(0x0A0B), "wWw.ExAmPlE.tEsT.", "198.51.100.10")] {
            let query = QueryBuilder(id: id, name: name)
            let response = try XCTUnwrap(rawUDP(kb, query.bytes), "no reply to \(name)")
            XCTAssertEqual(response.id, id, "\(response)")
            XCTAssertEqual(response.questionName, name, "\(response)")
            XCTAssertEqual(response.questionBytes, Array(query.bytes[12...]), "question bytes must be echoed exactly: \(response)")
            XCTAssertEqual(response.rcode, DNSRcode.noError, "\(response)")
            XCTAssertEqual(response.addresses, [expected], "\(response)")
        }
    }

    func testReverseZonesOfPodAndServiceCIDRsGoToClusterDNS() throws {
        let kb = try startKubebridgeWithKnots()
        // --pod-cidr 172.20.0.0/16 -> 20.172.in-addr.arpa
        assertAnswer(try dig(kb, "5.3.20.172.in-addr.arpa", "PTR"), "PTR", ["172-20-3-5.prod.pod.cluster.local."])
        assertAnswer(try dig(kb, "-x", "172.20.3.5"), "PTR", ["172-20-3-5.prod.pod.cluster.local."])
        // --service-cidr 172.21.0.0/16 -> 21.172.in-addr.arpa, matched case-insensitively.
        assertAnswer(try dig(kb, "1.0.21.172.IN-ADDR.Arpa", "PTR"), "PTR", ["kubernetes.default.svc.cluster.local."])
        // 172.22.0.0/16 is in neither CIDR: upstream.
        assertAnswer(try dig(kb, "5.3.22.172.in-addr.arpa", "PTR"), "PTR", ["outside-cidrs.upstream.example.test."])
    }

    func testSlash12CIDRCoversSixteenReverseZonesAndNoMore() throws {
        let kb = try startKubebridgeWithKnots()
        // --service-cidr 10.96.0.0/12 -> 96.10 ... 111.10.in-addr.arpa
        assertAnswer(try dig(kb, "1.0.96.10.in-addr.arpa", "PTR"), "PTR", ["first-of-slash12.svc.cluster.local."])
        assertAnswer(try dig(kb, "1.0.100.10.in-addr.arpa", "PTR"), "PTR", ["middle-of-slash12.svc.cluster.local."])
        assertAnswer(try dig(kb, "1.0.111.10.in-addr.arpa", "PTR"), "PTR", ["last-of-slash12.svc.cluster.local."])
        assertAnswer(try dig(kb, "1.0.95.10.in-addr.arpa", "PTR"), "PTR", ["below-slash12.upstream.example.test."])
        assertAnswer(try dig(kb, "1.0.112.10.in-addr.arpa", "PTR"), "PTR", ["above-slash12.upstream.example.test."])
    }

    func testSlash17CIDRAndIPv6CIDRReverseZones() throws {
        let kb = try startKubebridgeWithKnots(["--pod-cidr", "10.244.0.0/17", "--service-cidr", "fd00:21::/108"])
        // 10.244.0.0/17 -> 0...127.244.10.in-addr.arpa, not all of 244.10.in-addr.arpa.
        assertAnswer(try dig(kb, "-x", "10.244.0.1"), "PTR", ["first-of-slash17.pod.cluster.local."])
        assertAnswer(try dig(kb, "-x", "10.244.127.1"), "PTR", ["last-of-slash17.pod.cluster.local."])
        assertAnswer(try dig(kb, "-x", "10.244.128.1"), "PTR", ["above-slash17.upstream.example.test."])
        // fd00:21::/108 -> its ip6.arpa nibble zone.
        assertAnswer(try dig(kb, "-x", "fd00:21::30"), "PTR", ["dual.prod.svc.cluster.local."])
        assertAnswer(try dig(kb, "-x", "fd00:22::30"), "PTR", ["outside-v6-cidr.upstream.example.test."])
    }

    func testForwardZoneGoesToItsServer() throws {
        let kb = try startKubebridgeWithKnots()
        let app = try dig(kb, "app.corp.test")
        assertAnswer(app, "A", ["10.1.2.3"])   // the upstream stand-in would REFUSE corp.test
        XCTAssertEqual(try dig(kb, "APP.Corp.Test").addresses, ["10.1.2.3"])
        XCTAssertEqual(try dig(kb, "nosuch.corp.test").status, "NXDOMAIN")
    }

    func testForwardZoneWithTwoServersFallsBackWhenTheFirstIsSilent() throws {
        let knots = try knots()
        let silent = try startFake(.silent)
        let kb = try startKubebridgeWithKnots(Self.timeouts(upstreamMs: 300, queryMs: 3000),
                                              forwards: ["corp.test=\(silent.endpoint),\(knots.corp.endpoint)"])
        assertAnswer(try dig(kb, "app.corp.test", timeoutSeconds: 5), "A", ["10.1.2.3"])
    }

    func testLongestSuffixWins() throws {
        let knots = try knots()
        let fake = try startFake(.ok)
        let kb = try startKubebridgeWithKnots(forwards: ["corp.test=\(knots.corp.endpoint)",
                                                         "special.svc.cluster.local=\(fake.endpoint)"])
        let special = try dig(kb, "x.special.svc.cluster.local")
        XCTAssertEqual(special.status, "NOERROR", "\(special)")
        XCTAssertTrue(special.addresses.first?.hasPrefix("192.0.2.") ?? false,
                      "x.special.svc.cluster.local should go to the --forward server: \(special)")
        XCTAssertEqual(try dig(kb, "special.svc.cluster.local").addresses.first?.hasPrefix("192.0.2."), true)
        // Siblings of the forward zone still go to the cluster DNS.
        assertAnswer(try dig(kb, "web.prod.svc.cluster.local"), "A", ["172.21.0.10"])
        XCTAssertEqual(try dig(kb, "notspecial.svc.cluster.local").status, "NXDOMAIN")
        XCTAssertEqual(try fake.state().queries.map(\.qname), ["x.special.svc.cluster.local.", "special.svc.cluster.local."])
    }

    func testIPv6Upstream() throws {
        let fake = try startFake(.ok, address: "::1")
        XCTAssertEqual(fake.endpoint, "[::1]:\(fake.port)")
        let kb = try startKubebridge(upstreams: [fake])
        let result = try dig(kb, "v6-upstream.example.test")
        XCTAssertEqual(result.status, "NOERROR", "\(result)")
        XCTAssertEqual(result.addresses, ["192.0.2.1"], "\(result)")
    }

    func testUpstreamPortDefaultsTo53() throws {
        guard getuid() == 0 else { throw XCTSkip("binding port 53 needs root") }
        let fake: FakeDNS
        do {
            fake = try startFake(.ok, address: "127.0.0.7", port: 53)
        } catch {
            throw XCTSkip("127.0.0.7:53 is not available: \(error)")
        }
        let kb = try startKubebridge(["--cluster-dns", "127.0.0.9:9", "--upstream", "127.0.0.7"])
        let result = try dig(kb, "port53.example.test")
        XCTAssertEqual(result.status, "NOERROR", "\(result)")
        XCTAssertEqual(result.addresses, ["192.0.2.1"], "--upstream 127.0.0.7 should mean port 53: \(result)")
    }
}

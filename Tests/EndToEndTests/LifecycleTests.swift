import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Process lifecycle: SIGTERM (checked in every tearDown) and SIGINT both exit 0.
final class LifecycleTests: EndToEndTestCase {
    func testSIGINTExitsZero() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        assertAnswer(try dig(kb, "before-sigint.example.test"), "A", ["192.0.2.1"])
        let exit = kb.stop(signal: SIGINT)
        XCTAssertTrue(exit.isCleanExit, "kubebridge should exit 0 on SIGINT, got \(exit); stderr:\n\(E2E.tail(kb.stderr))")
    }

    func testSeveralWorkerThreads() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake], ["--threads", "2"])
        for i in 0..<6 {
            let result = try dig(kb, "threads-\(i).example.test", options: i % 2 == 0 ? [] : ["+tcp"])
            XCTAssertEqual(result.status, "NOERROR", "\(result)")
            XCTAssertEqual(result.addresses.count, 1, "\(result)")
        }
    }
}

import Foundation
import XCTest

/// A listener bound to the wildcard address must answer from the address the query was
/// sent to (IP_PKTINFO / IPV6_PKTINFO), or clients such as nginx and dig reject the reply.
/// Runs inside a private network namespace (`unshare -n`) so the wildcard socket is never
/// reachable from outside the test.
final class WildcardListenerTests: XCTestCase {
    func testRepliesLeaveFromTheQueriedAddress() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for unshare -n") }
        let bin = KubebridgeProcess.binaryURL().path
        let fake = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fakedns.py").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kb-wild-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let probe = """
        import socket, sys
        fam, dst = (socket.AF_INET6, sys.argv[1]) if ':' in sys.argv[1] else (socket.AF_INET, sys.argv[1])
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)
        q = bytes([0x12,0x34,1,0,0,1,0,0,0,0,0,0]) + b'\\x03www\\x04test\\x00' + bytes([0,1,0,1])
        s.sendto(q, (dst, 5353))
        data, src = s.recvfrom(4096)
        print(src[0], data[0] == 0x12 and data[1] == 0x34, data[3] & 15)
        """
        try probe.write(to: dir.appendingPathComponent("probe.py"), atomically: true, encoding: .utf8)
        let script = """
        set -e
        ip link set lo up
        ip addr add fd00::2/128 dev lo
        python3 \(fake) --mode ok --port 5399 --state \(dir.path)/fake.json >/dev/null 2>&1 &
        FAKE=$!
        \(bin) dns --listen 0.0.0.0:5353 --listen '[::]:5353' --upstream 127.0.0.1:5399 --threads 1 2>\(dir.path)/kb.log &
        KB=$!
        trap 'kill $KB $FAKE 2>/dev/null; wait 2>/dev/null' EXIT
        for i in $(seq 100); do ss -lun | grep -q ':5399 ' && grep -q 'listening on' \(dir.path)/kb.log && break; sleep 0.1; done
        python3 \(dir.path)/probe.py 127.0.0.2
        python3 \(dir.path)/probe.py 127.0.0.1
        python3 \(dir.path)/probe.py fd00::2
        python3 \(dir.path)/probe.py ::1
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-n", "bash", "-c", script]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let log = (try? String(contentsOf: dir.appendingPathComponent("kb.log"), encoding: .utf8)) ?? ""
        XCTAssertEqual(p.terminationStatus, 0, "output: \(text)\nkubebridge log: \(log)\nscript: \(script)")
        XCTAssertEqual(text.split(separator: "\n").map(String.init),
                       ["127.0.0.2 True 0", "127.0.0.1 True 0", "fd00::2 True 0", "::1 True 0"], text + log)
    }
}

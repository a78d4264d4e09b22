import Foundation
import Hummingbird
import ServiceLifecycle
import XCTest
@testable import SparseMoEServer
import SparseMoE
#if canImport(Glibc)
import Glibc
#endif

/// The real server on a loopback port, spoken to over a plain TCP socket: an answer, a
/// client that hangs up mid-stream, and a graceful shutdown that drains the backend.
final class ServingLiveServerTests: XCTestCase {
    /// Starts `server` on 127.0.0.1 with an ephemeral port, runs `body` with the port, then
    /// shuts the service group down gracefully.
    static func withLiveServer(_ server: CompletionServer, _ body: (Int) async throws -> Void) async throws {
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = server.application(host: "127.0.0.1", port: 0) { _, port in portSink.yield(port) }
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: app.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let first = await iterator.next()
            let port = try XCTUnwrap(first)
            XCTAssertGreaterThan(port, 0, "port 0 binds an ephemeral port and reports it")
            do { try await body(port) } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// A connected TCP socket to 127.0.0.1:`port` (closed by the caller).
    static func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var timeout = timeval(tv_sec: 5, tv_usec: 0)  // no test hangs on a silent server
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            sent += n
        }
    }

    /// Reads until the peer closes (or `until` appears in what was read, or the timeout).
    static func receive(_ fd: Int32, until marker: String? = nil) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            data += buffer[..<n]
            if let marker, String(decoding: data, as: UTF8.self).contains(marker) { break }
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func request(_ method: String, _ path: String, json: String? = nil) -> String {
        var r = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let json { r += "Content-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n" }
        return r + "\r\n" + (json ?? "")
    }

    func testRealServerAnswersOverLoopbackAndDrainsOnShutdown() async throws {
        let backend = FakeBackend(bytesOf: "Hello")
        try await Self.withLiveServer(ServingHTTPTests.server(backend)) { port in
            let fd = try Self.connect(port)
            defer { close(fd) }
            Self.send(fd, Self.request("POST", "/v1/completions", json: #"{"model": "tiny", "prompt": "hi", "max_tokens": 5}"#))
            let answer = Self.receive(fd)
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
            let body = try XCTUnwrap(answer.components(separatedBy: "\r\n\r\n").last)
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], answer)
            XCTAssertEqual((o["choices"] as? [[String: Any]])?.first?["text"] as? String, "Hello")

            let health = try Self.connect(port)
            defer { close(health) }
            Self.send(health, Self.request("GET", "/health"))
            XCTAssertTrue(Self.receive(health).contains(#""status":"ok""#))
        }
        XCTAssertEqual(backend.submitted.first?.maxNewTokens, 5)
        XCTAssertEqual(backend.shutdownCalls, 1, "graceful shutdown drains the backend")
    }

    /// Graceful shutdown while a response streams: the stream runs to its end, then the backend drains.
    func testGracefulShutdownFinishesTheStreamInFlight() async throws {
        let text = "draining"
        let backend = FakeBackend(.paced(text.utf8.map { .token(Int32($0)) } + [.finished(.length)], interval: .milliseconds(15)))
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = ServingHTTPTests.server(backend).application(host: "127.0.0.1", port: 0) { _, port in portSink.yield(port) }
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: app.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let first = await iterator.next()
            let fd = try Self.connect(try XCTUnwrap(first))
            defer { close(fd) }
            Self.send(fd, Self.request("POST", "/v1/completions", json: #"{"prompt": "hi", "stream": true}"#))
            XCTAssertTrue(Self.receive(fd, until: "data: ").hasPrefix("HTTP/1.1 200"))
            await group.triggerGracefulShutdown()  // mid-stream
            let rest = Self.receive(fd)
            XCTAssertTrue(rest.contains("data: [DONE]"), rest)
            XCTAssertTrue(rest.contains(#""finish_reason":"length""#), rest)
            try await tasks.waitForAll()
        }
        XCTAssertTrue(backend.cancelled.isEmpty, "nothing was cut short")
        XCTAssertEqual(backend.shutdownCalls, 1)
    }

    func testClientHangingUpMidStreamCancelsTheSequence() async throws {
        let backend = FakeBackend(.endless(interval: .milliseconds(2), modulo: 26))
        try await Self.withLiveServer(ServingHTTPTests.server(backend, maxTokens: 100_000)) { port in
            let fd = try Self.connect(port)
            Self.send(fd, Self.request("POST", "/v1/completions", json: #"{"prompt": "hi", "max_tokens": 100000, "stream": true}"#))
            let start = Self.receive(fd, until: "data: ")
            XCTAssertTrue(start.hasPrefix("HTTP/1.1 200"), start)
            XCTAssertTrue(start.lowercased().contains("content-type: text/event-stream"), start)
            close(fd)
            let cancelled = await backend.wait { !$0.cancelled.isEmpty }
            XCTAssertTrue(cancelled, "the stream's sequence is cancelled once the client is gone")
        }
    }
}

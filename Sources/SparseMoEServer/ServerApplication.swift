import Hummingbird
import ServiceLifecycle

extension CompletionServer {
    /// A Hummingbird application serving `router()` on `host:port` (port 0: an ephemeral
    /// port). `onReady` gets the address actually bound once the server listens. The
    /// application's service group also holds a `BackendDrainService`, which it shuts down
    /// after the HTTP server: on SIGINT/SIGTERM (`runService()`) the server stops accepting,
    /// finishes the responses in flight, then the backend drains and stops.
    public func application(host: String, port: Int,
                            onReady: @escaping @Sendable (_ host: String, _ port: Int) async -> Void = { _, _ in }) -> some ApplicationProtocol {
        Application(
            router: router(),
            configuration: .init(address: .hostname(host, port: port), serverName: "sparsemoe"),
            services: [BackendDrainService(backend: backend)],
            onServerRunning: { channel in
                await onReady(host, channel.localAddress?.port ?? port)
            }
        )
    }
}

/// A service that waits for graceful shutdown (or cancellation), then shuts the backend
/// down: it stops taking requests, finishes the queued and running ones, and stops.
public struct BackendDrainService: Service {
    public let backend: any CompletionBackend

    public init(backend: any CompletionBackend) { self.backend = backend }

    public func run() async throws {
        try? await gracefulShutdown()
        await backend.shutdown()
    }
}

import SparseMoE

/// What the HTTP server needs of a generation engine: take requests, report its load, drain.
/// `GenerationEngine` (continuous batching) is the real one; tests use a scripted one.
public protocol CompletionBackend: Sendable {
    /// Starts `request`; its tokens arrive on the returned stream. Throws
    /// `ServingError.queueFull`, `.invalidRequest` or `.shuttingDown`.
    func submit(_ request: GenerationRequest) throws -> GenerationStream
    /// Requests waiting for admission.
    var queueLength: Int { get }
    /// Sequences decoding now.
    var running: Int { get }
    /// Stops taking requests, finishes the queued and running ones, then returns.
    func shutdown() async
}

/// The continuous-batching engine of the library is the backend `moe serve` runs.
extension GenerationEngine: CompletionBackend {}

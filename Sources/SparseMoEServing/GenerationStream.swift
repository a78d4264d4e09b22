/// The events of one submitted request as an async sequence, and a way to cancel it.
///
/// Ending the iteration early (a `break`, a cancelled task) cancels the request too, so a
/// client that goes away frees its sequence's cache at the next step.
public struct GenerationStream: AsyncSequence, Sendable {
    public typealias Element = GenerationEvent
    public let id: RequestID
    let events: AsyncStream<GenerationEvent>
    let cancelAction: @Sendable () -> Void

    /// A stream over `events`; `cancel` asks whoever produces them to stop.
    public init(id: RequestID, events: AsyncStream<GenerationEvent>, cancel: @escaping @Sendable () -> Void) {
        self.id = id
        self.events = events
        self.cancelAction = cancel
    }

    /// Stops the request; its stream then ends with `.finished(.cancelled)`.
    public func cancel() { cancelAction() }

    public func makeAsyncIterator() -> AsyncStream<GenerationEvent>.Iterator { events.makeAsyncIterator() }
}

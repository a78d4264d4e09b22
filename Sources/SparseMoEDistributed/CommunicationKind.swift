/// What a collective call carries, for the per-step communication table (`CommunicationTally`).
///
/// Extensible: a kind is its name, so a layer that adds traffic declares its own kinds in an
/// extension (`static let … = CommunicationKind("…")`) and they land in the same table.
/// Untagged calls are counted under their operation's default kind (`allReduce`,
/// `broadcast`, `allToAll`, `barrier`); `Communicator.accounted(as:_:)` tags a call.
public struct CommunicationKind: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }
    public static func < (a: Self, b: Self) -> Bool { a.name < b.name }

    public init(from decoder: Decoder) throws { name = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }

    // Defaults of untagged calls, by operation.
    /// An all-reduce nobody tagged.
    public static let allReduce = CommunicationKind("all-reduce")
    /// A broadcast nobody tagged (data parallel: rank 0's initial parameters, the settings
    /// check, debug builds' replica check).
    public static let broadcast = CommunicationKind("broadcast")
    /// An all-to-all nobody tagged.
    public static let allToAll = CommunicationKind("all-to-all")
    /// Barriers (counted, no payload).
    public static let barrier = CommunicationKind("barrier")

    // Data parallelism.
    /// The averaging of the gradients (the flat buckets, one float per trainable parameter).
    public static let gradients = CommunicationKind("all-reduce gradients")
    /// Small all-reduces of statistics: which parameters have gradients (one float per
    /// trainable tensor), the step's losses, the expert counts of the batch-level balance loss,
    /// the pending loads of the aux-loss-free bias update.
    public static let statistics = CommunicationKind("all-reduce statistics")

    // Expert parallelism: token rows to their experts' ranks and back, per MoE layer.
    public static let dispatchForward = CommunicationKind("all-to-all dispatch forward")
    public static let combineForward = CommunicationKind("all-to-all combine forward")
    public static let dispatchBackward = CommunicationKind("all-to-all dispatch backward")
    public static let combineBackward = CommunicationKind("all-to-all combine backward")
}

import SparseMoE

/// One rank's communication in a data-parallel run, for `summary.json`: the collectives of
/// the training steps as a mean per step, by kind (`CommunicationTally`: payload bytes the
/// library hands to the transport, and the wall time spent inside the calls, which is the
/// transfer plus the wait for the slowest peer), and the collectives before the first step
/// (the settings check, rank 0's initial parameters) once.
public struct CommunicationReport: Codable, Sendable, Equatable {
    /// Means per step of one kind.
    public struct PerStep: Codable, Sendable, Equatable {
        public var calls: Double
        public var bytesSent: Double
        public var bytesReceived: Double
        public var waitMS: Double

        enum CodingKeys: String, CodingKey { case calls, bytesSent = "bytes_sent", bytesReceived = "bytes_received", waitMS = "wait_ms" }
    }

    public var ranks: Int
    /// The rank these numbers are from (rank 0 writes the report).
    public var rank: Int
    /// Steps the means are over.
    public var steps: Int
    /// Kind name → mean per step.
    public var perStep: [String: PerStep]
    public var bytesSentPerStep: Double
    public var bytesReceivedPerStep: Double
    public var waitMSPerStep: Double
    /// Mean wall time of a step, milliseconds (the wait's share of it: waitMSPerStep / stepMSMean).
    public var stepMSMean: Double
    /// Before the first step, once.
    public var setup: CommunicationTally

    public init(ranks: Int, rank: Int, steps: Int, tally: CommunicationTally, setup: CommunicationTally, stepMSMean: Double) {
        self.ranks = ranks
        self.rank = rank
        self.steps = steps
        let n = Double(max(steps, 1))
        perStep = Dictionary(uniqueKeysWithValues: tally.entries.map { k, e in
            (k.name, PerStep(calls: Double(e.calls) / n, bytesSent: Double(e.bytesSent) / n, bytesReceived: Double(e.bytesReceived) / n,
                             waitMS: e.seconds * 1e3 / n))
        })
        bytesSentPerStep = Double(tally.totalBytesSent) / n
        bytesReceivedPerStep = Double(tally.totalBytesReceived) / n
        waitMSPerStep = tally.totalSeconds * 1e3 / n
        self.stepMSMean = stepMSMean
        self.setup = setup
    }

    enum CodingKeys: String, CodingKey {
        case ranks, rank, steps, setup
        case perStep = "per_step", bytesSentPerStep = "bytes_sent_per_step", bytesReceivedPerStep = "bytes_received_per_step"
        case waitMSPerStep = "wait_ms_per_step", stepMSMean = "step_ms_mean"
    }
}

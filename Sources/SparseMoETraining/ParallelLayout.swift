/// How N ranks share a training run (`Trainer(…, communicator:, parallel:)`).
public enum ParallelLayout: Sendable, Equatable {
    /// Data parallelism: every rank holds and trains the whole model on B/N of each batch.
    case data
    /// Expert parallelism over all N ranks: one expert group, rank r computing experts
    /// [r·E/N, (r+1)·E/N) for every rank's tokens; each rank trains on B/N of each batch, and
    /// everything but the routed experts is data parallel.
    case expert
    /// Both: groups of M consecutive ranks, experts partitioned within a group and replicated
    /// across the N/M groups.
    case dataExpert(expertRanks: Int)

    /// Ranks per expert group M for `worldSize` ranks (1: no expert parallelism).
    public func expertRanks(worldSize: Int) -> Int {
        switch self {
        case .data: return 1
        case .expert: return worldSize
        case let .dataExpert(m): return m
        }
    }
}

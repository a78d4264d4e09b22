import SparseMoEDistributed

/// The expert group of one rank for expert-parallel execution of a `MoELayer`: M ranks, rank g
/// of the group computing experts [g·E/M, (g+1)·E/M) for the tokens of all M ranks.
///
/// The group knows only the `Communicator` protocol (in-process threads in tests, MPI under
/// `mpirun`). Collectives also run inside `backward()` (the reverse all-to-alls), which cannot
/// throw: a failure there is kept in `failure` (the gradient stays partial) and later
/// collectives of the group are skipped; the trainer calls `throwIfFailed()` after backward.
public final class ExpertParallelGroup: @unchecked Sendable {
    /// The M ranks of this expert group.
    public let communicator: any Communicator
    /// The first error of a collective run inside backward.
    public private(set) var failure: Error?

    public init(communicator: any Communicator) {
        self.communicator = communicator
    }

    /// This rank in the group, 0..<M.
    public var rank: Int { communicator.rank }
    /// Ranks in the group, M.
    public var size: Int { communicator.size }

    /// The experts group rank `rank` holds out of `numExperts` (E divisible by M).
    public func experts(of numExperts: Int, rank: Int) -> Range<Int> {
        precondition(numExperts % size == 0, "expert parallelism: \(numExperts) experts over \(size) ranks")
        let local = numExperts / size
        return (rank * local)..<((rank + 1) * local)
    }

    /// Throws the error a collective met inside backward, if any, and forgets it.
    public func throwIfFailed() throws {
        if let f = failure {
            failure = nil
            throw f
        }
    }

    /// Keeps the first error of a collective run where no error can be thrown.
    func record(_ error: Error) {
        if failure == nil { failure = error }
    }

    /// Whether a collective inside backward failed (later ones are skipped).
    var hasFailed: Bool { failure != nil }
}

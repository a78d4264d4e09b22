/// Collective communication among the N ranks (processes or threads) of one training job.
///
/// Every rank calls the same collectives in the same order with matching arguments; each
/// call blocks until all ranks have called it, or throws `CommunicatorError.timeout` after
/// `timeout` seconds (a dead or lagging peer ends in an error naming the operation, never a
/// hang). Implementations: `LocalCommunicatorGroup` (N threads of one process, for tests)
/// and, outside the library, one over MPI (the `moe` tool's `SparseMoEMPI`).
///
/// Sums are deterministic: every rank receives bit-identical results.
public protocol Communicator: AnyObject {
    /// This rank, 0..<size.
    var rank: Int { get }
    /// Number of ranks N.
    var size: Int { get }
    /// Seconds a collective may wait for its peers before it throws.
    var timeout: Double { get }
    /// buffer ← Σ_r buffer_r, elementwise, on every rank (same count on every rank).
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// buffer ← buffer_root on every rank (same count on every rank).
    func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws
    /// Personalised all-to-all of rows of `rowLength` floats: `send` holds `sendCounts[d]`
    /// rows for each destination d in rank order; returns the rows received from each
    /// source s in rank order and their counts (`counts[s]` = what s sent to this rank).
    func allToAllv(_ send: [Float], sendCounts: [Int], rowLength: Int) throws -> (rows: [Float], counts: [Int])
    /// Returns once every rank has called it.
    func barrier() throws
    /// Sub-communicators (`MPI_Comm_split`): every rank calls it; the ranks that pass the same
    /// `color` (≥ 0) form one new communicator, ranked by `key` (ties: by rank here). Collectives
    /// on it involve only its members and keep this communicator's timeout. Expert parallelism
    /// uses it for the expert groups and for the ranks that hold the same experts.
    func split(color: Int, key: Int) throws -> any Communicator
}

extension Communicator {
    /// `allReduceSum` of an array.
    public func allReduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    /// `broadcast` of an array.
    public func broadcast(_ values: inout [Float], root: Int = 0) throws {
        try values.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Checks the arguments every implementation shares: `sendCounts` has `size` entries ≥ 0
    /// whose rows fill `send` exactly.
    public func checkAllToAllvArguments(_ send: [Float], sendCounts: [Int], rowLength: Int) throws {
        guard sendCounts.count == size, sendCounts.allSatisfy({ $0 >= 0 }), rowLength >= 1,
              sendCounts.reduce(0, +) * rowLength == send.count else {
            throw CommunicatorError.invalidArgument(operation: "allToAllv", message:
                "sendCounts \(sendCounts) (one per rank, ≥ 0) of rows of \(rowLength) floats must fill the \(send.count) floats sent")
        }
    }
}

/// Why a collective failed.
public enum CommunicatorError: Error, CustomStringConvertible, Equatable {
    /// Not every rank reached the collective within the timeout.
    case timeout(operation: String, rank: Int, seconds: Double, arrived: Int, size: Int)
    /// Ranks called different collectives, or the same one with different sizes.
    case mismatch(operation: String, rank: Int, message: String)
    /// A call's own arguments are wrong.
    case invalidArgument(operation: String, message: String)
    /// The group failed earlier (a timeout or mismatch on some rank); no collective can complete.
    case groupFailed(operation: String, rank: Int, cause: String)
    /// The transport reported an error.
    case transport(operation: String, rank: Int, message: String)

    public var description: String {
        switch self {
        case let .timeout(op, rank, s, arrived, size):
            let seen = arrived >= 0 ? " (\(arrived) of \(size) ranks arrived)" : ""
            return "rank \(rank): \(op) timed out after \(s) s\(seen): a peer rank died, hangs, or runs other code"
        case let .mismatch(op, rank, m): return "rank \(rank): \(op) mismatch across ranks: \(m)"
        case let .invalidArgument(op, m): return "\(op): \(m)"
        case let .groupFailed(op, rank, cause): return "rank \(rank): \(op) cannot complete, the group failed earlier: \(cause)"
        case let .transport(op, rank, m): return "rank \(rank): \(op) failed: \(m)"
        }
    }
}

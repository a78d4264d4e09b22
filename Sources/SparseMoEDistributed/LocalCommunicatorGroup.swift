import Foundation

/// N ranks as N threads of one process, meeting at one rendezvous: the in-process
/// `Communicator` that `swift test` drives through the same code paths as MPI.
///
/// Sums run in rank order, ((x₀ + x₁) + x₂) + …, once, and every rank copies the one result,
/// so all ranks hold bit-identical values. A collective that not every rank reaches within
/// `timeout` seconds throws `CommunicatorError.timeout` on the ranks that wait, and marks the
/// group failed: every later collective on any rank throws `groupFailed` at once.
///
/// Threads: the C kernels' thread count (`Threads.count`) is one process-wide setting, and
/// each rank thread opens its own OpenMP teams of that size, so N ranks run N·count kernel
/// threads. Set `Threads.count = 1` (or cores / N) before starting ranks on one machine;
/// results do not depend on it (every kernel is deterministic for any thread count).
public final class LocalCommunicatorGroup: @unchecked Sendable {
    public let size: Int
    public let timeout: Double

    private let condition = NSCondition()
    // State below is guarded by `condition`.
    private var signature = ""
    private var arrived = 0
    private var departed = 0
    private var draining = false
    private var generation = 0
    private var contributions: [[Float]]
    private var results: [[Float]] = []
    private var failure: String?
    /// Communicators made by `split`, by split number, one per rank of this group.
    private var splits: [Int: [LocalCommunicator]] = [:]
    private var splitCount = 0

    /// A group of `size` ranks whose collectives wait at most `timeout` seconds.
    public init(size: Int, timeout: Double = 60) throws {
        guard size >= 1 else {
            throw CommunicatorError.invalidArgument(operation: "LocalCommunicatorGroup", message: "size must be ≥ 1, got \(size)")
        }
        guard timeout > 0, timeout.isFinite else {
            throw CommunicatorError.invalidArgument(operation: "LocalCommunicatorGroup", message: "timeout must be > 0 seconds, got \(timeout)")
        }
        self.size = size
        self.timeout = timeout
        contributions = Array(repeating: [], count: size)
    }

    /// The communicator of `rank` (one per rank thread).
    public func communicator(rank: Int) -> LocalCommunicator {
        precondition(rank >= 0 && rank < size, "rank \(rank) outside 0..<\(size)")
        return LocalCommunicator(group: self, rank: rank)
    }

    /// Runs `body` on `size` new threads, one per rank, and returns each rank's result in rank
    /// order once all have finished.
    public static func run<T>(size: Int, timeout: Double = 60, stackBytes: Int = 64 << 20,
                              _ body: @escaping @Sendable (LocalCommunicator) throws -> T) throws -> [Result<T, Error>] {
        let group = try LocalCommunicatorGroup(size: size, timeout: timeout)
        let box = ResultBox<T>(size: size)
        let done = DispatchGroup()
        for r in 0..<size {
            done.enter()
            let comm = group.communicator(rank: r)
            let thread = Thread {
                let result = Result { try body(comm) }
                box.set(r, result)
                done.leave()
            }
            thread.stackSize = stackBytes
            thread.start()
        }
        done.wait()
        return box.values()
    }

    /// One collective: rank `rank` contributes `data`; when all `size` have, `combine` maps the
    /// contributions (in rank order) to one shared result or one result per rank.
    func collective(_ op: String, rank: Int, signature sig: String, data: [Float],
                    combine: ([[Float]]) throws -> [[Float]]) throws -> [Float] {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        func waitOrFail(_ arrivedSoFar: Int) throws {
            if let f = failure { throw CommunicatorError.groupFailed(operation: op, rank: rank, cause: f) }
            if !condition.wait(until: deadline) {
                if let f = failure { throw CommunicatorError.groupFailed(operation: op, rank: rank, cause: f) }
                let error = CommunicatorError.timeout(operation: op, rank: rank, seconds: timeout, arrived: arrivedSoFar, size: size)
                failure = error.description
                condition.broadcast()
                throw error
            }
        }
        // The previous collective must have been read by every rank before this one starts.
        while draining { try waitOrFail(-1) }
        if let f = failure { throw CommunicatorError.groupFailed(operation: op, rank: rank, cause: f) }
        if arrived == 0 {
            signature = sig
        } else if signature != sig {
            let error = CommunicatorError.mismatch(operation: op, rank: rank, message: "this rank called \(sig), an earlier rank \(signature)")
            failure = error.description
            condition.broadcast()
            throw error
        }
        contributions[rank] = data
        arrived += 1
        let myGeneration = generation
        if arrived == size {
            do {
                results = try combine(contributions)
            } catch {
                failure = "\(error)"
                condition.broadcast()
                throw error
            }
            contributions = Array(repeating: [], count: size)
            draining = true
            generation += 1
            condition.broadcast()
        } else {
            while generation == myGeneration { try waitOrFail(arrived) }
        }
        let mine = results.count == 1 ? results[0] : results[rank]
        departed += 1
        if departed == size {
            results = []
            arrived = 0
            departed = 0
            draining = false
            condition.broadcast()
        }
        return mine
    }
}

extension LocalCommunicatorGroup {
    /// `Communicator.split` for rank `rank`: the last rank to arrive builds one new group per
    /// color (under the rendezvous lock) and every rank takes its communicator from it.
    func split(rank: Int, color: Int, key: Int) throws -> any Communicator {
        let made = try collective("split", rank: rank, signature: "split", data: [Float(color), Float(key)]) { parts in
            var members: [Int: [(key: Int, rank: Int)]] = [:]
            for (r, p) in parts.enumerated() { members[Int(p[0]), default: []].append((Int(p[1]), r)) }
            var made = [LocalCommunicator?](repeating: nil, count: self.size)
            for (_, list) in members {
                let ordered = list.sorted { ($0.key, $0.rank) < ($1.key, $1.rank) }
                let group = try LocalCommunicatorGroup(size: ordered.count, timeout: self.timeout)
                for (newRank, m) in ordered.enumerated() { made[m.rank] = group.communicator(rank: newRank) }
            }
            self.splitCount += 1
            self.splits[self.splitCount] = made.map { $0! }
            return [[Float(self.splitCount)]]
        }
        condition.lock()
        defer { condition.unlock() }
        return splits[Int(made[0])]![rank]
    }

    /// Checks a split's color.
    static func checkColor(_ color: Int) throws {
        guard color >= 0, color < 1 << 24 else {
            throw CommunicatorError.invalidArgument(operation: "split", message: "color must be in 0..<2²⁴, got \(color)")
        }
    }
}

/// One rank's view of a `LocalCommunicatorGroup`.
public final class LocalCommunicator: Communicator, @unchecked Sendable {
    public let group: LocalCommunicatorGroup
    public let rank: Int
    public var size: Int { group.size }
    public var timeout: Double { group.timeout }

    init(group: LocalCommunicatorGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        let n = buffer.count
        let sum = try group.collective("allReduceSum", rank: rank, signature: "allReduceSum(\(n) floats)", data: Array(buffer)) { parts in
            var s = parts[0]
            for p in parts.dropFirst() { for i in 0..<n { s[i] += p[i] } }
            return [s]
        }
        _ = buffer.update(from: sum)
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard root >= 0 && root < size else {
            throw CommunicatorError.invalidArgument(operation: "broadcast", message: "root \(root) outside 0..<\(size)")
        }
        let n = buffer.count
        let value = try group.collective("broadcast", rank: rank, signature: "broadcast(\(n) floats, root \(root))",
                                         data: rank == root ? Array(buffer) : []) { [$0[root]] }
        _ = buffer.update(from: value)
    }

    public func allToAllv(_ send: [Float], sendCounts: [Int], rowLength: Int) throws -> (rows: [Float], counts: [Int]) {
        try checkAllToAllvArguments(send, sendCounts: sendCounts, rowLength: rowLength)
        let n = size
        // Contribution: the counts, then the rows (counts as floats are exact below 2²⁴ rows).
        let packed = sendCounts.map(Float.init) + send
        let mine = try group.collective("allToAllv", rank: rank, signature: "allToAllv(rows of \(rowLength) floats)",
                                        data: packed) { parts in
            // Offsets of each destination's rows in each source's contribution.
            let counts = parts.map { $0.prefix(n).map { Int($0) } }
            return (0..<n).map { dst in
                var out = counts.map { Float($0[dst]) }
                for src in 0..<n {
                    let start = n + counts[src].prefix(dst).reduce(0, +) * rowLength
                    out += parts[src][start..<(start + counts[src][dst] * rowLength)]
                }
                return out
            }
        }
        return (Array(mine[n...]), mine.prefix(n).map { Int($0) })
    }

    public func barrier() throws {
        _ = try group.collective("barrier", rank: rank, signature: "barrier", data: []) { _ in [[]] }
    }

    public func split(color: Int, key: Int) throws -> any Communicator {
        try LocalCommunicatorGroup.checkColor(color)
        return try group.split(rank: rank, color: color, key: key)
    }
}

/// Per-rank results written by the rank threads.
private final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, Error>?]
    init(size: Int) { slots = Array(repeating: nil, count: size) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func values() -> [Result<T, Error>] { lock.lock(); defer { lock.unlock() }; return slots.map { $0! } }
}

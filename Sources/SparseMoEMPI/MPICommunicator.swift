import CMoEMPI
import SparseMoEDistributed

/// `Communicator` over Open MPI's `MPI_COMM_WORLD`: one rank per process, started by
/// `mpirun -np N`. Every collective is the non-blocking MPI call polled until done or
/// `timeout` seconds, so a dead peer ends in `CommunicatorError.timeout` (then call `abort`
/// so that the other ranks end too). The all-reduce sums in rank order (a reduce-scatter by
/// `MPI_Ialltoallv`, then `MPI_Iallgatherv`), so every rank gets bit-identical sums and the
/// same numbers as `LocalCommunicatorGroup`.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let timeout: Double
    /// The shim's handle of this communicator: 0 = `MPI_COMM_WORLD`, others from `split`.
    let handle: Int32

    /// Whether this build has MPI (Open MPI's headers were found when it was built).
    public static var isAvailable: Bool { moe_mpi_available() != 0 }

    /// Initialises MPI (`MPI_Init_thread`, funneled: only the calling thread talks MPI).
    public init(timeout: Double) throws {
        guard timeout > 0, timeout.isFinite else {
            throw CommunicatorError.invalidArgument(operation: "MPI", message: "timeout must be > 0 seconds, got \(timeout)")
        }
        var r: Int32 = 0, s: Int32 = 1
        var err = [CChar](repeating: 0, count: 512)
        if moe_mpi_init(&r, &s, &err, Int32(err.count)) != 0 {
            throw CommunicatorError.transport(operation: "MPI_Init_thread", rank: 0, message: Self.text(err))
        }
        rank = Int(r)
        size = Int(s)
        self.timeout = timeout
        handle = 0
    }

    /// A sub-communicator made by `split`.
    init(handle: Int32, rank: Int, size: Int, timeout: Double) {
        self.handle = handle
        self.rank = rank
        self.size = size
        self.timeout = timeout
    }

    static func text(_ err: [CChar]) -> String { String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }

    /// Turns a shim return code into nothing or the error.
    func check(_ op: String, _ body: (UnsafeMutablePointer<CChar>, Int32) -> Int32) throws {
        var err = [CChar](repeating: 0, count: 512)
        let rc = err.withUnsafeMutableBufferPointer { body($0.baseAddress!, Int32($0.count)) }
        switch rc {
        case 0: return
        case 1: throw CommunicatorError.timeout(operation: op, rank: rank, seconds: timeout, arrived: -1, size: size)
        default: throw CommunicatorError.transport(operation: op, rank: rank, message: Self.text(err))
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard size > 1, let p = buffer.baseAddress else { return }
        try check("allReduceSum") { moe_mpi_allreduce_sum_on(handle, p, Int64(buffer.count), timeout, $0, $1) }
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard root >= 0 && root < size else {
            throw CommunicatorError.invalidArgument(operation: "broadcast", message: "root \(root) outside 0..<\(size)")
        }
        guard size > 1, let p = buffer.baseAddress else { return }
        try check("broadcast") { moe_mpi_bcast_on(handle, p, Int64(buffer.count), Int32(root), timeout, $0, $1) }
    }

    public func allToAllv(_ send: [Float], sendCounts: [Int], rowLength: Int) throws -> (rows: [Float], counts: [Int]) {
        try checkAllToAllvArguments(send, sendCounts: sendCounts, rowLength: rowLength)
        var received = [Int32](repeating: 0, count: size)
        let rowsOut = sendCounts.map(Int32.init)
        try check("allToAllv") { e, n in moe_mpi_alltoall_int_on(handle, rowsOut, &received, timeout, e, n) }
        let counts = received.map(Int.init)
        func layout(_ rows: [Int]) -> ([Int32], [Int32]) {
            var displs: [Int32] = [], at = 0
            for c in rows { displs.append(Int32(at * rowLength)); at += c }
            return (rows.map { Int32($0 * rowLength) }, displs)
        }
        let (sc, sd) = layout(sendCounts), (rc, rd) = layout(counts)
        var rows = [Float](repeating: 0, count: counts.reduce(0, +) * rowLength)
        try check("allToAllv") { e, n in
            send.withUnsafeBufferPointer { s in
                rows.withUnsafeMutableBufferPointer { r in
                    moe_mpi_alltoallv_float_on(handle, s.baseAddress, sc, sd, r.baseAddress, rc, rd, timeout, e, n)
                }
            }
        }
        return (rows, counts)
    }

    public func barrier() throws {
        try check("barrier") { moe_mpi_barrier_on(handle, timeout, $0, $1) }
    }

    /// `MPI_Comm_split` (after a barrier polled against the timeout).
    public func split(color: Int, key: Int) throws -> any Communicator {
        guard color >= 0, color <= Int(Int32.max), key >= Int(Int32.min), key <= Int(Int32.max) else {
            throw CommunicatorError.invalidArgument(operation: "split", message: "color must be in 0...\(Int32.max) and key a 32-bit integer, got \(color), \(key)")
        }
        var made: Int32 = 0, r: Int32 = 0, s: Int32 = 1
        try check("split") { moe_mpi_comm_split(handle, Int32(color), Int32(key), &made, &r, &s, timeout, $0, $1) }
        return MPICommunicator(handle: made, rank: Int(r), size: Int(s), timeout: timeout)
    }

    /// Ends every rank of the job (`MPI_Abort`) with `code`: after an error on one rank, so
    /// that the others do not wait for it.
    public func abort(code: Int32 = 1) -> Never {
        moe_mpi_abort(code)
        fatalError("MPI_Abort returned")
    }

    /// `MPI_Finalize`, once, at the end of the process.
    public func finalize() { moe_mpi_finalize() }
}

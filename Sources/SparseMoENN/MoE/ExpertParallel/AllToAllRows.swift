import SparseMoECore
import SparseMoEDistributed

/// Differentiable personalised all-to-all of rows over an expert group (`Communicator.allToAllv`).
///
/// x `[R, C]` holds `sendCounts[d]` rows for each rank d of the group, in rank order; the result
/// holds the rows every rank s sent to this one, in source order `[R', C]`, with `counts[s]`
/// rows from s. The forward is a permutation of rows across the ranks, so its backward is the
/// transpose: the reverse all-to-all of the output gradient (send counts = the counts received),
/// added to x's gradient. Every rank of the group must call it (and its backward) in the same order.
/// The two transfers are counted as `kinds` when the group's communicator counts (`CountingCommunicator`).
func allToAllRows(_ x: Tensor, sendCounts: [Int], group: ExpertParallelGroup,
                  kinds: (forward: CommunicationKind, backward: CommunicationKind) = (.allToAll, .allToAll)) throws -> (rows: Tensor, counts: [Int]) {
    precondition(x.rank == 2 && x.dtype == .float32, "allToAllRows: x must be float32 [R, C], got \(x.shape) \(x.dtype)")
    let c = x.shape[1]
    let comm = group.communicator
    let sent = Array(UnsafeBufferPointer(start: x.floats, count: x.count))
    let (rows, counts) = try comm.accounted(as: kinds.forward) { try comm.allToAllv(sent, sendCounts: sendCounts, rowLength: c) }
    let out = Tensor(rows, shape: [counts.reduce(0, +), c])
    out.recording("allToAllRows", inputs: [x]) { g in
        guard !group.hasFailed else { return }
        do {
            let back = try comm.accounted(as: kinds.backward) {
                try comm.allToAllv(Array(UnsafeBufferPointer(start: g.floats, count: g.count)), sendCounts: counts, rowLength: c)
            }
            precondition(back.counts == sendCounts, "allToAllRows backward: received \(back.counts) rows, sent \(sendCounts)")
            let dx = x.gradBuffer().floats
            for i in 0..<back.rows.count { dx[i] += back.rows[i] }
        } catch {
            group.record(error)
        }
    }
    return (out, counts)
}

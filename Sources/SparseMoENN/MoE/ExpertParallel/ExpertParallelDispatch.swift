import SparseMoECore
import SparseMoEDistributed

extension Experts {
    /// Expert-parallel form of `callAsFunction(_:routing:)`: the same y, with this rank computing
    /// only its experts [g·E/M, (g+1)·E/M) (g = `group.rank`) for the tokens of the whole group.
    ///
    /// 1. Counting sort of the kept (token, slot) assignments by expert, which orders them by
    ///    destination rank d = e / (E/M), then local expert; dropped slots (-1) are not sent.
    /// 2. All-to-all of the per-expert counts (E/M per destination), then of the token rows.
    /// 3. One `routedExperts` call on the rows received (each with its local expert, gate 1),
    ///    with this rank's slices of the stacked weights.
    /// 4. The reverse all-to-all returns each row's output to its token's rank, where
    ///    `combineSlotRows` sums them with the gates in slot order.
    /// Backward runs the two all-to-alls in reverse (`allToAllRows`); the gate and input gradients
    /// equal the single-process ones, and the weight gradients of this rank's experts sum the
    /// contributions of every rank's tokens. `stats` counts this rank's own tokens per expert `[E]`.
    func callAsFunction(_ x: Tensor, routing: Routing, group: ExpertParallelGroup) throws -> (output: Tensor, stats: RoutedExpertsStats) {
        let (t, c) = (x.shape[0], x.shape[1])
        let k = routing.experts.shape[1]
        let m = group.size, e = numExperts
        precondition(e % m == 0, "expert parallelism: \(e) experts over \(m) ranks")
        let local = e / m
        // 1. Counting sort by expert (`DispatchPlan`, stable: token order, then slot order, within an expert).
        let plan = try DispatchPlan(expertIndices: routing.experts, numExperts: e, op: "expert-parallel dispatch")
        let perExpert = plan.tokensPerExpert, assignments = plan.assignments
        let tokenOfRow = plan.sorted.prefix(assignments).map { $0 / Int32(k) }
        let rowOfSlot = plan.position.prefix(t * k).map { Int($0) }
        let sendCounts = (0..<m).map { d in perExpert[(d * local)..<((d + 1) * local)].reduce(0, +) }
        // 2. Counts per local expert from every source, then the rows.
        let comm = group.communicator
        let (countRows, _) = try comm.accounted(as: .dispatchForward) {
            try comm.allToAllv(perExpert.map(Float.init), sendCounts: [Int](repeating: 1, count: m), rowLength: local)
        }
        // One row per kept assignment, its token's (`embedding`: backward adds each row's gradient to its token's).
        let sendRows = embedding(x, Tensor(indices: Array(tokenOfRow), shape: [assignments]))
        let (received, receivedCounts) = try allToAllRows(sendRows, sendCounts: sendCounts, group: group,
                                                          kinds: (.dispatchForward, .dispatchBackward))
        let r = received.shape[0]
        var localExpert = [Int32]()
        localExpert.reserveCapacity(r)
        for s in 0..<m {
            var fromSource = 0
            for l in 0..<local {
                let n = Int(countRows[s * local + l])
                localExpert += repeatElement(Int32(l), count: n)
                fromSource += n
            }
            precondition(fromSource == receivedCounts[s], "expert parallelism: rank \(s) announced \(fromSource) rows and sent \(receivedCounts[s])")
        }
        // 3. This rank's experts on the rows received.
        let mine = group.experts(of: e, rank: group.rank)
        let weights = (w1: w1.slice(rows: mine), w3: w3?.slice(rows: mine), w2: w2.slice(rows: mine),
                       b1: b1?.slice(rows: mine), b2: b2?.slice(rows: mine))
        var ran = ExpertSchedule.sequential
        let computed: Tensor
        if r > 0 {
            let result = try routedExperts(received, experts: Tensor(indices: localExpert, shape: [r, 1]),
                                           gates: Tensor(repeating: 1, shape: [r, 1]),
                                           w1: weights.w1, w3: weights.w3, w2: weights.w2, b1: weights.b1, b2: weights.b2,
                                           activation: kind.expertActivation, schedule: schedule)
            computed = result.output
            ran = result.stats.schedule
        } else {
            // No rows: an empty output that still links the received rows and the weights into the
            // graph, so that every rank's backward reaches the same all-to-alls.
            let inputs = [received, weights.w1, weights.w2] + [weights.w3, weights.b1, weights.b2].compactMap { $0 }
            computed = Tensor(zeros: [0, c]).recording("expertParallelNoRows", inputs: inputs) { _ in
                for input in inputs where input.requiresGrad { _ = input.gradBuffer() }
            }
        }
        // 4. Back to the tokens' ranks; combine with the gates.
        let (returned, _) = try allToAllRows(computed, sendCounts: receivedCounts, group: group,
                                             kinds: (.combineForward, .combineBackward))
        let y = combineSlotRows(returned, gates: routing.gates, rowOfSlot: rowOfSlot)
        return (y, RoutedExpertsStats(tokensPerExpert: perExpert, assignments: assignments, schedule: ran))
    }
}

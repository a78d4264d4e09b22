import SparseMoECore
import SparseMoENN
import SparseMoEModels
import SparseMoEDistributed

/// The training side of expert parallelism: sub-communicators, expert-gradient reduction,
/// the global gradient norm, and the gather that lets rank 0 save the full model.
///
/// N ranks in groups of M consecutive ranks: world rank r is rank g = r mod M of expert group
/// ⌊r/M⌋ (`expertGroup`, M ranks) and one of the N/M ranks holding the same experts
/// (`expertReplicas`). Every rank keeps the full stacked expert tensors (initialised, loaded and
/// saved whole, so checkpoints resume on any N) but computes and trains only its slice
/// [g·E/M, (g+1)·E/M) of each; the rest of a rank's copy is stale and unused.
///
/// Gradients: rank r's loss L_r is the mean over its B/N sequences and the global loss is
/// (1/N) Σ_r L_r. The expert slice on its owner already sums ∂L_r/∂θ over the M ranks of its
/// group (their tokens came to it), so the step's gradient is (1/N) · the sum over the N/M
/// replicas: an all-reduce over `expertReplicas`, then · 1/N. Non-expert parameters are
/// averaged over all N ranks (`DataParallel`). The clipping norm adds the non-expert squares
/// (identical everywhere) to the owned expert squares summed over one expert group.
final class ExpertParallel {
    let world: any Communicator
    let expertGroup: ExpertParallelGroup
    let expertReplicas: any Communicator
    let layers: [MoELayer]
    /// Stacked expert tensors of every layer, in model order.
    let expertTensors: [Tensor]

    /// Splits `world` into groups of `expertRanks` and hands each MoE layer its group.
    /// Every rank must call it; the checks are the same on every rank, so all ranks throw alike.
    init(world: any Communicator, expertRanks m: Int, model: TransformerLM) throws {
        let n = world.size
        guard m >= 1, m <= n, n % m == 0 else {
            throw SparseMoEError.invalidConfig(field: "expert_ranks", message: "\(n) ranks cannot form expert groups of \(m) ranks: the expert group size must divide the number of ranks (one of \((1...n).filter { n % $0 == 0 }.map(String.init).joined(separator: ", ")))")
        }
        let layers = model.moeLayers
        guard !layers.isEmpty else {
            throw SparseMoEError.invalidConfig(field: "moe", message: "expert parallelism needs an MoE model, this one is dense (no MoE layers): use data parallelism")
        }
        for layer in layers where layer.experts.numExperts % m != 0 {
            throw SparseMoEError.invalidConfig(field: "num_experts", message: "\(layer.experts.numExperts) experts cannot be split over \(m) expert-parallel ranks: the number of experts must be a multiple of \(m) (or use fewer ranks per expert group)")
        }
        self.world = world
        self.layers = layers
        let group = ExpertParallelGroup(communicator: try world.split(color: world.rank / m, key: world.rank))
        expertGroup = group
        expertReplicas = try world.split(color: world.rank % m, key: world.rank)
        for layer in layers { try layer.setExpertParallel(group) }
        expertTensors = layers.flatMap { $0.experts.namedParameters().map(\.tensor) }
    }

    /// Whether `t` is one of the stacked expert tensors.
    func isExpert(_ t: Tensor) -> Bool { expertTensors.contains { $0 === t } }

    /// Elements of `t` (stacked `[E, …]`) this rank owns: its experts' rows.
    func ownedRange(_ t: Tensor) -> Range<Int> {
        let perExpert = t.count / t.shape[0]
        let mine = expertGroup.experts(of: t.shape[0], rank: expertGroup.rank)
        return (mine.lowerBound * perExpert)..<(mine.upperBound * perExpert)
    }

    /// After backward: rethrows a collective's failure inside backward; then makes every expert
    /// tensor's gradient the global-batch gradient on its owned slice (sum over the replicas,
    /// · 1/N). An expert tensor with a gradient on any rank gets one (zeros) on every rank.
    func reduceExpertGradients() throws {
        try expertGroup.throwIfFailed()
        var has = expertTensors.map { $0.grad == nil ? Float(0) : 1 }
        try world.accounted(as: .statistics) { try world.allReduceSum(&has) }
        let ranges = expertTensors.map(ownedRange)
        var flat = [Float](repeating: 0, count: ranges.reduce(0) { $0 + $1.count })
        var offset = 0
        for (t, range) in zip(expertTensors, ranges) {
            if let g = t.grad {
                flat.withUnsafeMutableBufferPointer { $0.baseAddress!.advanced(by: offset).update(from: g.floats + range.lowerBound, count: range.count) }
            }
            offset += range.count
        }
        if expertReplicas.size > 1 { try expertReplicas.accounted(as: .gradients) { try expertReplicas.allReduceSum(&flat) } }
        let inverse = 1 / Float(world.size)
        offset = 0
        for (i, (t, range)) in zip(expertTensors, ranges).enumerated() {
            if has[i] > 0 {
                let g = t.gradBuffer().floats + range.lowerBound
                for j in 0..<range.count { g[j] = flat[offset + j] * inverse }
            } else {
                t.zeroGrad()
            }
            offset += range.count
        }
    }

    /// ‖g‖₂ of the global step: non-expert squares (identical on every rank after their
    /// all-reduce) plus the owned expert squares summed over the expert group.
    func gradientNorm(_ trainable: [Tensor]) throws -> Double {
        let local = AdamW.gradientNorm(trainable.filter { !isExpert($0) })
        let owned = trainable.filter(isExpert).reduce(0.0) { total, t in
            guard let g = t.grad else { return total }
            var s = 0.0
            let p = g.floats
            for j in ownedRange(t) { s += Double(p[j]) * Double(p[j]) }
            return total + s
        }
        // The double travels as two floats (high part, remainder): the sum keeps ~48 bits.
        let high = Float(owned)
        var parts = [high, Float(owned - Double(high))]
        try expertGroup.communicator.accounted(as: .statistics) { try expertGroup.communicator.allReduceSum(&parts) }
        return (local * local + Double(parts[0]) + Double(parts[1])).squareRoot()
    }

    /// Copies every expert slice, with its optimiser moments, to world rank 0 (the ranks of expert
    /// group 0 hold all E experts between them), so that rank 0 holds the full model and
    /// optimiser state before it writes a checkpoint. Every rank must call it.
    func gatherToRankZero(optimizer: AdamW) throws {
        let inGroupZero = world.rank < expertGroup.size
        for t in expertTensors {
            var tensors = [t]
            if let moments = optimizer.moments(of: t) { tensors += [moments.0, moments.1] }
            for target in tensors {
                let range = ownedRange(target)
                let perExpert = target.count / target.shape[0]
                var counts = [Int](repeating: 0, count: world.size)
                if inGroupZero { counts[0] = range.count / perExpert }
                let send = inGroupZero ? Array(UnsafeBufferPointer(start: target.floats + range.lowerBound, count: range.count)) : []
                let (rows, _) = try world.allToAllv(send, sendCounts: counts, rowLength: perExpert)
                if world.rank == 0 {
                    precondition(rows.count == target.count, "expert gather: \(rows.count) floats for \(target.shape)")
                    target.withUnsafeMutableFloats { $0.baseAddress!.update(from: rows, count: rows.count) }
                }
            }
        }
    }

    /// Owned slices of the expert tensors, as views (for the replica check among the ranks
    /// that hold the same experts).
    func ownedSlices() -> [Tensor] {
        withNoGrad { expertTensors.map { $0.slice(rows: expertGroup.experts(of: $0.shape[0], rank: expertGroup.rank)) } }
    }
}

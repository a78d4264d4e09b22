import SparseMoECore
import SparseMoENN

/// Removing the least-used routed experts of every MoE layer (pruning the MoE way).
///
/// Usage is counted on calibration batches (`ExpertPruning.usage`): the assignments each
/// expert computed. Per layer the `keep` most-used experts survive (ties: lower index), in
/// their original order; their router rows (and biases) are kept and the others removed, so the
/// router's softmax (or sigmoid + normalisation) now spreads over the survivors alone — the
/// routing is renormalised over them. Every other parameter is shared with the source model
/// (no copy), in its storage dtype. Not for group-limited routing (`n_group` > 1, whose
/// groups are fixed ranges of expert indices) or hash routing (which maps tokens to indices).
public enum ExpertPruning {
    /// Assignments per expert, per MoE layer (in `moeLayers` order), over `batches` of token ids `[B, T]`.
    public static func usage(_ model: TransformerLM, batches: [Tensor]) throws -> [[Int]] {
        var counts = model.moeLayers.map { [Int](repeating: 0, count: $0.experts.numExperts) }
        try withNoGrad {
            for batch in batches {
                let out = try model.forward(batch, options: ForwardOptions(lastPositionLogitsOnly: true))
                for (i, moe) in out.moe.compactMap({ $0 }).enumerated() {
                    for (e, n) in moe.dispatch.tokensPerExpert.enumerated() { counts[i][e] += n }
                }
            }
        }
        return counts
    }

    /// The experts each layer keeps: the `keep` most used, ascending index.
    public static func survivors(usage: [[Int]], keep: Int) -> [[Int]] {
        usage.map { counts in
            counts.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.prefix(keep).sorted()
        }
    }

    /// The smallest number of experts that keeps, in every layer, each expert whose share of
    /// that layer's assignments is ≥ `minShare` (at least top-k).
    public static func keepCount(usage: [[Int]], minShare: Double, topK: Int) -> Int {
        let perLayer = usage.map { counts -> Int in
            let total = max(counts.reduce(0, +), 1)
            return counts.filter { Double($0) / Double(total) >= minShare }.count
        }
        return max(perLayer.max() ?? 0, topK)
    }

    /// A model with only `survivors[i]` experts in MoE layer i (the same count in every layer).
    /// Throws `invalidConfig` naming the field that forbids pruning.
    public static func prune(_ model: TransformerLM, survivors: [[Int]]) throws -> TransformerLM {
        guard var moe = model.config.moe else {
            throw SparseMoEError.invalidConfig(field: "moe", message: "the model has no MoE layers to prune")
        }
        let layers = model.moeLayers
        guard survivors.count == layers.count, let keep = survivors.first?.count, survivors.allSatisfy({ $0.count == keep }) else {
            throw SparseMoEError.invalidArgument(op: "prune", message: "give the same number of surviving experts for each of the \(layers.count) MoE layers")
        }
        guard keep >= moe.topK, keep <= moe.numExperts else {
            throw SparseMoEError.invalidConfig(field: "num_experts", message: "keeping \(keep) experts: need top-k = \(moe.topK) ≤ kept ≤ \(moe.numExperts)")
        }
        guard moe.nGroup <= 1 else {
            throw SparseMoEError.invalidConfig(field: "n_group", message: "group-limited routing (n_group = \(moe.nGroup)) ties experts to fixed index ranges; pruning would break the groups")
        }
        guard moe.router != .hash else {
            throw SparseMoEError.invalidConfig(field: "router", message: "hash routing maps tokens to expert indices; pruning would change which expert a token reaches")
        }
        for (i, s) in survivors.enumerated() where Set(s).count != s.count || s.contains(where: { $0 < 0 || $0 >= moe.numExperts }) {
            throw SparseMoEError.invalidArgument(op: "prune", message: "layer \(i): survivors \(s) must be distinct experts in 0..<\(moe.numExperts)")
        }
        moe.numExperts = keep
        var config = model.config
        config.moe = moe
        let pruned = try TransformerLM.placeholder(config: config)
        // Per-expert parameters (leading axis E) of each MoE layer → that layer's survivors.
        var perExpert: [ObjectIdentifier: [Int]] = [:]
        for (layer, s) in zip(layers, survivors) {
            for p in layer.router.namedParameters() + layer.experts.namedParameters() { perExpert[ObjectIdentifier(p.tensor)] = s }
        }
        let source = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        for (name, t) in pruned.namedParameters() {
            let src = source[name]!
            if let keep = perExpert[ObjectIdentifier(src)] {
                t.adoptStorage(of: selectLeading(src, keep))
            } else {
                t.adoptStorage(of: src)
            }
            t.requiresGrad = src.requiresGrad
        }
        return pruned
    }

    /// Rows `indices` of `t`'s leading axis, as a new tensor of the same dtype.
    static func selectLeading(_ t: Tensor, _ indices: [Int]) -> Tensor {
        let out = Tensor(zeros: [indices.count] + t.shape.dropFirst(), dtype: t.dtype)
        let inner = Array(t.shape.dropFirst())
        if t.dtype.isQuantized {
            let rows = inner.dropLast().reduce(1, *), cols = inner.last!
            for (j, i) in indices.enumerated() {
                let src = Tensor(storage: t.storage, shape: inner, offset: t.offset + i * rows * cols)
                out.writeRows(j * rows, count: rows, from: src.rawBase, scales: src.scalesBase.map { UnsafeRawPointer($0) }, dtype: t.dtype)
            }
        } else {
            let bytes = inner.reduce(1, *) * t.dtype.elementBytes!
            for (j, i) in indices.enumerated() { (out.rawBase + j * bytes).copyMemory(from: t.rawBase + i * bytes, byteCount: bytes) }
        }
        return out
    }
}

import SparseMoE

/// One fixed MoE expert-computation workload of `moe bench`: T tokens of width C through E
/// SwiGLU experts of hidden F, top-K routing, dropless unless `capacityFactor` is set.
///
/// Useful FLOPs of one forward: 2 · 3 · C · F · K · T (the three expert matrices of the K
/// experts each token visits; router and combine excluded); forward + backward: 3× that.
public struct ExpertWorkload: Codable, Sendable, Equatable {
    public var name: String
    public var tokens: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numExperts: Int
    public var topK: Int
    /// Switch-style capacity factor (slots per expert = ⌈factor · T·K / E⌉, overflow dropped); nil = dropless.
    public var capacityFactor: Double?

    public init(name: String, tokens: Int, hiddenSize: Int, intermediateSize: Int, numExperts: Int, topK: Int, capacityFactor: Double? = nil) throws {
        let op = "ExpertWorkload"
        guard tokens >= 1, hiddenSize >= 1, intermediateSize >= 1, numExperts >= 1 else {
            throw SparseMoEError.invalidArgument(op: op, message: "\(name): T, C, F, E must be ≥ 1; got T = \(tokens), C = \(hiddenSize), F = \(intermediateSize), E = \(numExperts)")
        }
        guard topK >= 1, topK <= numExperts else {
            throw SparseMoEError.invalidArgument(op: op, message: "\(name): top-k must be in 1...E = 1...\(numExperts), got \(topK)")
        }
        if let f = capacityFactor, !(f > 0 && f.isFinite) {
            throw SparseMoEError.invalidArgument(op: op, message: "\(name): capacity factor must be > 0, got \(f)")
        }
        (self.name, self.tokens, self.hiddenSize, self.intermediateSize, self.numExperts, self.topK, self.capacityFactor) =
            (name, tokens, hiddenSize, intermediateSize, numExperts, topK, capacityFactor)
    }

    /// 6·C·F·K·T.
    public var usefulForwardFLOPs: Double { 6 * Double(hiddenSize) * Double(intermediateSize) * Double(topK) * Double(tokens) }
    /// 18·C·F·K·T.
    public var usefulForwardBackwardFLOPs: Double { 3 * usefulForwardFLOPs }
    /// Rows per expert under perfectly balanced routing, ⌈T·K / E⌉.
    public var balancedRowsPerExpert: Int { (tokens * topK + numExperts - 1) / numExperts }

    // The table. `try!` is safe: the sizes are constants that pass validation.
    public static let mixtralLike = try! ExpertWorkload(name: "mixtral-like", tokens: 2048, hiddenSize: 512, intermediateSize: 1024, numExperts: 8, topK: 2)
    public static let fineGrained = try! ExpertWorkload(name: "fine-grained", tokens: 2048, hiddenSize: 512, intermediateSize: 256, numExperts: 64, topK: 8)
    public static let switchTop1 = try! ExpertWorkload(name: "switch-top1", tokens: 2048, hiddenSize: 512, intermediateSize: 1024, numExperts: 32, topK: 1)
    public static let switchTop1Capacity = try! ExpertWorkload(name: "switch-top1-cf1.25", tokens: 2048, hiddenSize: 512, intermediateSize: 1024,
                                                               numExperts: 32, topK: 1, capacityFactor: 1.25)
    public static let wide = try! ExpertWorkload(name: "wide", tokens: 1024, hiddenSize: 1024, intermediateSize: 2816, numExperts: 8, topK: 2)

    /// The fixed workloads, in the order (switch-top1 also with capacity factor 1.25).
    public static let all: [ExpertWorkload] = [mixtralLike, fineGrained, switchTop1, switchTop1Capacity, wide]

    /// A fixed workload by name.
    public static func named(_ name: String) throws -> ExpertWorkload {
        guard let w = all.first(where: { $0.name == name }) else {
            throw SparseMoEError.invalidArgument(op: "ExpertWorkload", message: "unknown workload '\(name)'; known: \(all.map(\.name).joined(separator: ", "))")
        }
        return w
    }

    /// A copy with other sizes (sweeps).
    public func with(name: String? = nil, tokens: Int? = nil, intermediateSize: Int? = nil, numExperts: Int? = nil, topK: Int? = nil) throws -> ExpertWorkload {
        try ExpertWorkload(name: name ?? self.name, tokens: tokens ?? self.tokens, hiddenSize: hiddenSize, intermediateSize: intermediateSize ?? self.intermediateSize,
                           numExperts: numExperts ?? self.numExperts, topK: topK ?? self.topK, capacityFactor: capacityFactor)
    }
}

internal import CMoEKernels

/// The token → expert dispatch of one MoE call: a stable counting sort of the
/// (token, slot) pairs by expert (C kernel `moe_dispatch_plan`).
///
/// Expert `e` owns the sorted rows `offsets[e] ..< offsets[e + 1]`; within an expert the
/// rows are in ascending token, then slot, order, so everything computed from the plan is
/// deterministic. `sorted[r]` is the flat pair index `t·K + s` of sorted row `r`;
/// `position[t·K + s]` is the sorted row of pair (t, s), or -1 for a dropped slot.
/// Cost O(T·K + E).
public struct DispatchPlan: Sendable {
    public let tokens: Int
    public let topK: Int
    public let numExperts: Int
    /// `[E + 1]` row offsets per expert; `offsets[E]` = number of assignments.
    public let offsets: [Int64]
    /// `[A]` flat pair index of each sorted row.
    public let sorted: [Int32]
    /// `[T·K]` sorted row of each pair, -1 when dropped.
    public let position: [Int32]

    /// Number of (token, slot) pairs with an expert (slots that are not -1).
    public var assignments: Int { Int(offsets[numExperts]) }

    /// Rows (tokens) routed to each expert.
    public var tokensPerExpert: [Int] { (0..<numExperts).map { Int(offsets[$0 + 1] - offsets[$0]) } }

    /// Builds the plan from `expertIndices` int32 `[T, K]` (values in `0..<numExperts`, or
    /// -1 for a dropped slot). Throws naming the token and slot of the first bad index.
    public init(expertIndices: Tensor, numExperts: Int, op: String = "DispatchPlan") throws {
        try Check.int32(expertIndices, op, "experts")
        try Check.rank(expertIndices, 2, op, "experts")
        try Check.argument(numExperts >= 1, op, "the number of experts must be ≥ 1, got \(numExperts)")
        let t = expertIndices.shape[0], k = expertIndices.shape[1]
        var offsets = [Int64](repeating: 0, count: numExperts + 1)
        var sorted = [Int32](repeating: 0, count: max(t * k, 1))
        var position = [Int32](repeating: -1, count: max(t * k, 1))
        let result = offsets.withUnsafeMutableBufferPointer { o in
            sorted.withUnsafeMutableBufferPointer { s in
                position.withUnsafeMutableBufferPointer { p in
                    moe_dispatch_plan(o.baseAddress, s.baseAddress, p.baseAddress, expertIndices.int32s,
                                      Int64(t), Int64(k), Int64(numExperts))
                }
            }
        }
        if result < 0 {
            let pair = Int(-1 - result)
            let value = expertIndices.int32s[pair]
            throw SparseMoEError.invalidArgument(
                op: op, message: "experts[\(pair / k), \(pair % k)] (token \(pair / k), slot \(pair % k)) = \(value) is not a valid expert: expected 0..<\(numExperts) (E = \(numExperts)) or -1 for a dropped slot")
        }
        sorted.removeLast(sorted.count - Int(result))
        if t * k == 0 { position = [] }
        self.tokens = t
        self.topK = k
        self.numExperts = numExperts
        self.offsets = offsets
        self.sorted = sorted
        self.position = position
    }
}

import SparseMoECore

/// Expert-choice routing (Zhou et al. 2022).
///
/// scores = softmax(x·Wᵀ) over experts; each expert takes its top-C tokens by
/// score, C = ceil(T · capacityFactor / E) (at most T). A token may be taken by
/// 0...E experts; its gate for expert e is scores[t, e]. The routing uses the
/// `[T, E]` slot layout (slot e belongs to expert e). Balanced by construction:
/// no balancing loss is needed, and no token-side capacity applies.
public final class ExpertChoiceRouter: Router {
    public let numExperts: Int
    public let capacityFactor: Double
    /// `[E, C]`, checkpoint name `weight`.
    public let weight: Tensor

    public var topK: Int { numExperts }

    public init(hiddenSize: Int, numExperts: Int, capacityFactor: Double = 1, rng: inout RandomGenerator) throws {
        try RouterConfigCheck.numExperts(numExperts)
        try RouterConfigCheck.hiddenSize(hiddenSize)
        guard capacityFactor > 0, capacityFactor.isFinite else {
            throw SparseMoEError.invalidConfig(field: "capacity_factor", message: "must be > 0, got \(capacityFactor)")
        }
        self.numExperts = numExperts
        self.capacityFactor = capacityFactor
        self.weight = initRouterWeight(numExperts: numExperts, hiddenSize: hiddenSize, std: nil, rng: &rng)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] { [("weight", weight)] }

    /// Tokens each expert takes for a batch of `tokens`.
    public func capacity(tokens: Int) -> Int {
        min(tokens, max(1, Int((Double(tokens) * capacityFactor / Double(numExperts)).rounded(.up))))
    }

    public func route(_ x: Tensor, context: inout RoutingContext) throws -> Routing {
        try RouterConfigCheck.input(x, hiddenSize: weight.shape[1], router: "ExpertChoiceRouter")
        let logits = matmul(x, weight, transposeB: true, precision: .float32)
        let probs = softmax(logits)
        let (indices, weights) = expertChoice(probs, capacity: capacity(tokens: x.shape[0]))
        return Routing(experts: indices, gates: weights, probs: probs, logits: logits)
    }
}

import SparseMoECore

/// Hash routing (Roller et al. 2021): a fixed hash of the token id picks the
/// expert; gate weight 1. No learned parameters, no balancing loss: a baseline.
///
/// expert(id) = splitmix64(id ⊕ seed) mod E. The same id always goes to the same
/// expert, on every machine.
public final class HashRouter: Router {
    public let numExperts: Int
    public let seed: UInt64

    public var topK: Int { 1 }

    public init(numExperts: Int, seed: UInt64 = 0) throws {
        try RouterConfigCheck.numExperts(numExperts)
        self.numExperts = numExperts
        self.seed = seed
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] { [] }

    /// The expert for one token id.
    public func expert(for tokenId: Int32) -> Int32 {
        var z = UInt64(UInt32(bitPattern: tokenId)) ^ seed
        z &+= 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Int32(z % UInt64(numExperts))
    }

    public func route(_ x: Tensor, context: inout RoutingContext) throws -> Routing {
        guard let ids = context.tokenIds else {
            throw SparseMoEError.invalidArgument(op: "HashRouter", message: "hash routing needs the token ids (RoutingContext.tokenIds)")
        }
        let t = x.shape[0]
        guard ids.dtype == .int32, ids.count == t else {
            throw SparseMoEError.shapeMismatch(op: "HashRouter", message: "token ids \(ids.shape) \(ids.dtype) must be \(t) int32 ids, one per row of x \(x.shape)")
        }
        let experts = Tensor(zeros: [t, 1], dtype: .int32)
        for i in 0..<t { experts.int32s[i] = expert(for: ids.int32s[i]) }
        return Routing(experts: experts, gates: Tensor(repeating: 1, shape: [t, 1]))
    }
}

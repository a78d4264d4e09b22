import SparseMoECore
import SparseMoENN

/// What storage dtypes a parameter may take.
public enum WeightRole: String, Sendable {
    /// The routed experts' stacked matrices (`mlp.experts.*`).
    case expert
    /// Every other weight matrix: attention and dense projections, shared experts, the
    /// token embedding and the output projection.
    case matrix
    /// Always float32: norms, biases, router weights and biases, position tables (small, and
    /// routing decisions must not move with rounding).
    case float32
}

/// The storage dtype each parameter gets when a model is loaded or quantized.
public struct WeightDTypeChoice: Sendable, Equatable {
    /// The dtype asked for; nil keeps each tensor's dtype as stored in the file.
    public var dtype: DType?
    /// Apply `dtype` to the routed experts only; other matrices keep their stored dtype.
    public var expertsOnly: Bool

    public init(dtype: DType? = nil, expertsOnly: Bool = false) {
        self.dtype = dtype
        self.expertsOnly = expertsOnly
    }

    /// Float32 everywhere: a model to train.
    public static let float32 = WeightDTypeChoice(dtype: .float32)
    /// Each tensor as stored in the file.
    public static let asStored = WeightDTypeChoice()

    /// The dtype of a parameter of `role` stored in the file as `stored`.
    public func dtype(for role: WeightRole, stored: DType) -> DType {
        switch role {
        case .float32: return .float32
        case .expert: return dtype ?? stored
        case .matrix: return expertsOnly ? stored : (dtype ?? stored)
        }
    }
}

extension TransformerLM {
    /// The role of every parameter, keyed by its name in `namedParameters()`.
    public func weightRoles() -> [String: WeightRole] {
        var experts = Set<ObjectIdentifier>(), fixed = Set<ObjectIdentifier>()
        for layer in moeLayers {
            for p in layer.experts.namedParameters() where p.tensor.rank == 3 { experts.insert(ObjectIdentifier(p.tensor)) }
            for p in layer.router.namedParameters() { fixed.insert(ObjectIdentifier(p.tensor)) }
        }
        if let pos = positionTable { fixed.insert(ObjectIdentifier(pos)) }
        var roles: [String: WeightRole] = [:]
        for (name, t) in namedParameters() {
            let id = ObjectIdentifier(t)
            if experts.contains(id) { roles[name] = .expert }
            else if fixed.contains(id) || t.rank < 2 || name.hasSuffix("bias") { roles[name] = .float32 }
            else { roles[name] = .matrix }
        }
        return roles
    }

    /// Bytes of every parameter as stored (scales included), and how many parameters are in each dtype.
    public var weightStorage: (bytes: Int, parametersByDType: [DType: Int]) {
        var bytes = 0
        var counts: [DType: Int] = [:]
        for (_, t) in namedParameters() {
            bytes += t.storageBytes
            counts[t.dtype, default: 0] += t.count
        }
        return (bytes, counts)
    }
}

extension TransformerLM {
    /// Converts the parameters in place to the dtypes `choice` picks for their roles (float32
    /// parameters are the source; `dtype: nil` changes nothing). A model holding any weight
    /// that is not float32 is for inference: every parameter's `requiresGrad` is cleared.
    public func convertWeights(_ choice: WeightDTypeChoice) {
        let roles = weightRoles()
        for (name, t) in namedParameters() {
            let target = choice.dtype(for: roles[name] ?? .float32, stored: t.dtype)
            if target != t.dtype { t.adoptStorage(of: t.detached().converted(to: target)) }
        }
        if parameters.contains(where: { $0.dtype != .float32 }) {
            for p in parameters { p.requiresGrad = false }
        }
    }
}

import SparseMoECore

/// A layer that owns parameters.
///
/// Parameters are listed with dotted names relative to the module, in the
/// Hugging Face / PyTorch convention (`q_proj.weight`, `experts.gate_up_proj`), so a
/// model's `namedParameters()` are exactly its checkpoint's tensor names.
public protocol Module: AnyObject {
    /// This module's parameters and its children's, with dotted names.
    func namedParameters() -> [(name: String, tensor: Tensor)]
}

extension Module {
    /// All parameter tensors, in `namedParameters()` order.
    public var parameters: [Tensor] { namedParameters().map(\.tensor) }

    /// Total number of parameter elements.
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    /// The parameter with this dotted name, or nil.
    public func parameter(named name: String) -> Tensor? {
        namedParameters().first { $0.name == name }?.tensor
    }
}

/// Prefixes a child's parameter names: `prefix.name`.
public func prefixed(_ prefix: String, _ params: [(name: String, tensor: Tensor)]) -> [(name: String, tensor: Tensor)] {
    params.map { (prefix.isEmpty ? $0.name : "\(prefix).\($0.name)", $0.tensor) }
}

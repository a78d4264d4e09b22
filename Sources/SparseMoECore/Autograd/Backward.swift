extension Tensor {
    /// True when an op producing a result from `inputs` must record itself.
    static func needsGrad(_ inputs: [Tensor]) -> Bool {
        GradMode.isEnabled && inputs.contains { $0.requiresGrad }
    }

    /// Records `op` as the producer of `self` if any input requires a gradient.
    /// `backward` receives the output gradient and accumulates into the inputs.
    @discardableResult package
    func recording(_ op: String, inputs: [Tensor], backward: @escaping (Tensor) -> Void) -> Tensor {
        if Tensor.needsGrad(inputs) {
            requiresGrad = true
            gradNode = GradNode(op: op, inputs: inputs, backward: backward)
        }
        return self
    }

    /// Reverse-mode differentiation from this scalar: seeds d(self)/d(self) = 1.
    /// The tensor must have one element and require a gradient (a programmer error otherwise).
    public func backward() {
        Check.trapping { try Check.backward(self, gradient: nil) }
        backward(gradient: Tensor(repeating: 1, shape: shape))
    }

    /// Reverse-mode differentiation with an explicit output gradient (same shape
    /// as `self`), i.e. the vector–Jacobian product gradientᵀ·∂self/∂x.
    ///
    /// Runs every recorded op's backward once, in reverse topological order,
    /// accumulating `grad` on each tensor that requires it. Gradients of
    /// intermediate tensors are released once propagated; leaves keep theirs.
    public func backward(gradient: Tensor) {
        Check.trapping { try Check.backward(self, gradient: gradient) }
        Tensor.backward(roots: [(self, gradient)])
    }

    /// Backward from several roots at once, each seeded with its gradient: one traversal,
    /// so a tensor reached from two roots propagates the sum of both contributions once.
    /// The depth-first order explores `roots[0]` first, then `roots[1]`, …, exactly as a
    /// single traversal of a larger graph that reaches the roots in that order (what
    /// `checkpoint` needs to accumulate gradients in the same order as without it).
    /// Roots must require gradients and gradients must match their shapes.
    package static func backward(roots: [(tensor: Tensor, gradient: Tensor)]) {
        // Iterative depth-first topological order over the recorded graph.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = roots.reversed().map { ($0.tensor, false) }
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            let id = ObjectIdentifier(t)
            if visited.contains(id) { continue }
            visited.insert(id)
            stack.append((t, true))
            if let node = t.gradNode {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }
        for (root, gradient) in roots {
            let g = root.gradBuffer()
            let gp = g.floats, sp = gradient.floats
            for i in 0..<root.count { gp[i] += sp[i] }
        }
        for t in order.reversed() {
            guard let node = t.gradNode, let outGrad = t.grad else { continue }
            node.backward(outGrad)
            t.grad = nil  // intermediate: its gradient has been propagated
        }
    }
}

extension Check {
    /// `backward` from `t`: with no `gradient`, `t` has one element; a `gradient` has `t`'s
    /// shape and is float32; `t` requires a gradient.
    package static func backward(_ t: Tensor, gradient: Tensor?) throws {
        if let gradient {
            guard gradient.shape == t.shape, gradient.dtype == .float32 else {
                throw SparseMoEError.shapeMismatch(
                    op: "backward", message: "gradient \(gradient.shape) \(gradient.dtype) must match the tensor's shape \(t.shape), float32")
            }
        } else {
            guard t.count == 1 else {
                throw SparseMoEError.invalidArgument(
                    op: "backward", message: "backward() needs a scalar (one element), got shape \(t.shape); reduce it with sum() or mean(), or pass backward(gradient:)")
            }
        }
        guard t.requiresGrad else {
            throw SparseMoEError.invalidArgument(
                op: "backward", message: "the tensor does not require a gradient: no input it depends on has requiresGrad, or it was computed under withNoGrad")
        }
    }
}

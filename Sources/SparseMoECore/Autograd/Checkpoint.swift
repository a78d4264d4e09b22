/// Activation checkpointing: run `body` without keeping its intermediate tensors, and
/// recompute them when the gradient arrives.
///
///     let (outs, extra) = try checkpoint(inputs: [x], parameters: block.parameters) { xs, recomputing in
///         (outputs: [f(xs[0])], extra: ())
///     }
///
/// Forward: `body(inputs, false)` runs under `withNoGrad`, so its graph and the buffers
/// its ops save for backward are released as soon as it returns; what stays is `inputs`
/// (kept by the recorded node) and the outputs. Each non-nil output is returned as a view
/// that records one node. Backward: once every output that takes part in the loss has
/// received its gradient, `body(views of inputs, true)` runs again with recording on and
/// one backward traversal over its outputs, seeded with those gradients, accumulates into
/// the parameters' gradients and, through the input views (which share the inputs'
/// gradient buffers), into the inputs' gradients.
///
/// Gradients equal the ones of running `body` directly, bit for bit, when `body` is
/// deterministic: the recomputation replays the same ops on the same values, and its
/// traversal enters the outputs in the order the enclosing traversal reached them (the
/// reverse of the order their gradients arrived), so every tensor sums its gradient
/// contributions in the same order as without checkpointing.
///
/// Rules for `body`: it must compute the same values when called again — randomness
/// comes from a generator state captured before the first call (router noise) — and side
/// effects that must happen once (counting, caching) happen only when `recomputing` is
/// false. Tensors it uses that require gradients and are not `inputs` must be listed in
/// `parameters` (so that the node is recorded even when no input requires a gradient).
/// Outputs other than `outputs` (`extra`) come from the first call and carry no graph.
/// Memory while backward runs: one recomputed `body` graph at a time.
///
/// Under `withNoGrad`, or when neither inputs nor parameters require gradients, `body`
/// runs once, directly, with `recomputing` false.
public func checkpoint<Extra>(
    inputs: [Tensor], parameters: [Tensor] = [],
    _ body: @escaping (_ inputs: [Tensor], _ recomputing: Bool) throws -> (outputs: [Tensor?], extra: Extra)
) throws -> (outputs: [Tensor?], extra: Extra) {
    let recorded = inputs + parameters
    guard Tensor.needsGrad(recorded) else { return try body(inputs, false) }
    let first = try GradMode.$recomputable.withValue(true) { try withNoGrad { try body(inputs, false) } }
    let outputCount = first.outputs.count  // the closure below must not keep `first` alive
    let pending = CheckpointGradients(count: outputCount)
    // The joint tensor: every output's node feeds it, so the enclosing traversal runs its
    // node (the recomputation) after all outputs have handed over their gradients.
    let joint = Tensor(zeros: [1])
    joint.recording("checkpoint", inputs: recorded) { _ in
        let grads = pending.take()
        guard !grads.isEmpty else { return }
        let views = inputs.map { Tensor(storage: $0.storage, shape: $0.shape, offset: $0.offset, requiresGrad: $0.requiresGrad) }
        let again: [Tensor?]
        do {
            again = try GradMode.$enabled.withValue(true) { try body(views, true).outputs }
        } catch {
            preconditionFailure("checkpoint: recomputing a body that succeeded before threw \(error)")
        }
        precondition(again.count == outputCount, "checkpoint: recomputation returned \(again.count) outputs, first run \(outputCount)")
        var roots: [(tensor: Tensor, gradient: Tensor)] = []
        for (index, gradient) in grads {
            guard let out = again[index] else { preconditionFailure("checkpoint: output \(index) is nil on recomputation") }
            precondition(out.shape == gradient.shape, "checkpoint: output \(index) changed shape on recomputation")
            if out.requiresGrad { roots.append((out, gradient)) }
        }
        // The views accumulate straight into the inputs' gradient buffers, as the ops
        // of `body` would without checkpointing (same buffer, same order of additions).
        for (input, view) in zip(inputs, views) where input.requiresGrad { view.grad = input.grad }
        Tensor.backward(roots: roots)
        for (input, view) in zip(inputs, views) where input.requiresGrad { input.grad = view.grad }
    }
    let outputs: [Tensor?] = first.outputs.enumerated().map { index, out in
        guard let out else { return nil }
        let view = Tensor(storage: out.storage, shape: out.shape, offset: out.offset)
        return view.recording("checkpoint.output", inputs: [joint]) { g in
            pending.receive(index, g)
            _ = joint.gradBuffer()  // marks the joint node as reached
        }
    }
    return (outputs, first.extra)
}

/// The output gradients of one `checkpoint` node, in the order they arrived.
private final class CheckpointGradients {
    private var grads: [(index: Int, gradient: Tensor)] = []
    private let count: Int

    init(count: Int) { self.count = count }

    func receive(_ index: Int, _ gradient: Tensor) {
        precondition(index < count && !grads.contains { $0.index == index }, "checkpoint: output \(index) received two gradients")
        grads.append((index, gradient))
    }

    /// The gradients in the order the traversal reached their outputs (the reverse of
    /// arrival), and forgets them.
    func take() -> [(index: Int, gradient: Tensor)] {
        defer { grads = [] }
        return grads.reversed()
    }
}

import SparseMoECore

/// Hyperparameters of AdamW (defaults of PyTorch's `torch.optim.AdamW`).
public struct AdamWConfig: Codable, Sendable, Equatable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    /// Decoupled weight decay of the groups that decay (see `AdamW.defaultGroups`).
    public var weightDecay: Double = 0.01

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// Throws `invalidConfig` naming the first bad field.
    public func validate() throws {
        for (field, b) in [("beta1", beta1), ("beta2", beta2)] where !(b >= 0 && b < 1) {
            throw SparseMoEError.invalidConfig(field: field, message: "must be in [0, 1), got \(b)")
        }
        guard eps > 0 && eps.isFinite else { throw SparseMoEError.invalidConfig(field: "eps", message: "must be > 0, got \(eps)") }
        guard weightDecay >= 0 && weightDecay.isFinite else {
            throw SparseMoEError.invalidConfig(field: "weight_decay", message: "must be ≥ 0, got \(weightDecay)")
        }
    }
}

/// A set of parameters sharing optimiser settings.
public struct ParameterGroup {
    public var parameters: [(name: String, tensor: Tensor)]
    /// Decoupled weight decay of this group (0 = none).
    public var weightDecay: Double
    /// Multiplier on the learning rate passed to `AdamW.step(lr:)`.
    public var lrScale: Double

    public init(parameters: [(name: String, tensor: Tensor)], weightDecay: Double, lrScale: Double = 1) {
        self.parameters = parameters; self.weightDecay = weightDecay; self.lrScale = lrScale
    }
}

/// Result of global gradient-norm clipping.
public struct GradientClipResult: Sendable, Equatable {
    /// ‖g‖₂ over all gradients before clipping (NaN or ±Inf if any element is).
    public var norm: Double
    /// Factor the gradients were (`clipGradients`) or are to be (`clipScale`, then
    /// `step(lr:gradientScale:)`) multiplied by; 1 when not clipped or not finite.
    public var scale: Float
    /// False when some gradient element is NaN or ±Inf: the caller should skip the step.
    public var isFinite: Bool { norm.isFinite }
}

/// AdamW (Loshchilov & Hutter) with decoupled weight decay, following PyTorch's
/// `torch.optim.AdamW` step for step (C kernel `moe_adamw_step`):
///
///   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ),
///   θ ← θ − lr·(m̂/(√v̂ + ε) + wd·θ)
///
/// where t counts the steps in which this parameter had a gradient.
///
/// - Parameters with a nil `grad` are skipped (no moment update, no decay), like
///   PyTorch's `grad is None`; their step count does not advance.
/// - Parameters named in `frozen` are skipped entirely: not updated, and left out of
///   `gradientNorm` and `clipGradients`.
/// - Gradients accumulate across backward passes (backward adds), so gradient
///   accumulation is: several backward passes (each loss scaled by 1/steps), one
///   `step`, then `zeroGrad`.
/// - State (m, v, step counts) exports and imports as named tensors for a
///   safetensors file; an imported state continues bit-identically.
public final class AdamW {
    public let config: AdamWConfig
    public let groups: [ParameterGroup]
    /// Names of parameters never updated (e.g. routers when fine-tuning experts only).
    public var frozen: Set<String> = []
    /// Number of `step` calls so far.
    public private(set) var stepCount = 0

    private struct Entry {
        let name: String
        let tensor: Tensor
        let group: Int
        var expAvg: Tensor?
        var expAvgSq: Tensor?
        var steps = 0
    }
    private var entries: [Entry] = []

    /// Builds the optimiser over explicit groups.
    /// - Throws: `invalidConfig` for bad hyperparameters; `invalidArgument` if a name
    ///   appears twice, a tensor appears under two names, or a parameter is not float32.
    public init(groups: [ParameterGroup], config: AdamWConfig = AdamWConfig()) throws {
        try config.validate()
        var names = Set<String>()
        var seen: [ObjectIdentifier: String] = [:]
        for (gi, g) in groups.enumerated() {
            guard g.weightDecay >= 0 && g.weightDecay.isFinite, g.lrScale >= 0 && g.lrScale.isFinite else {
                throw SparseMoEError.invalidArgument(
                    op: "AdamW", message: "group \(gi): weight decay (\(g.weightDecay)) and lr scale (\(g.lrScale)) must be finite and ≥ 0")
            }
            for (name, t) in g.parameters {
                guard names.insert(name).inserted else {
                    throw SparseMoEError.invalidArgument(op: "AdamW", message: "parameter name '\(name)' appears twice")
                }
                if let other = seen[ObjectIdentifier(t)] {
                    throw SparseMoEError.invalidArgument(
                        op: "AdamW", message: "'\(name)' and '\(other)' are the same tensor (tied weights): list it once")
                }
                seen[ObjectIdentifier(t)] = name
                guard t.dtype == .float32 else {
                    throw SparseMoEError.invalidArgument(op: "AdamW", message: "parameter '\(name)' must be float32, got \(t.dtype)")
                }
                entries.append(Entry(name: name, tensor: t, group: gi))
            }
        }
        self.config = config
        self.groups = groups
    }

    /// Builds the optimiser with `defaultGroups` (decay `config.weightDecay` except
    /// where `excludesWeightDecay` says no).
    public convenience init(namedParameters: [(name: String, tensor: Tensor)], config: AdamWConfig = AdamWConfig()) throws {
        try self.init(groups: Self.defaultGroups(namedParameters, weightDecay: config.weightDecay), config: config)
    }

    /// The no-decay rule: a parameter is not decayed if its name ends in `bias`
    /// (covers `e_score_correction_bias`), `norm.weight` (`input_layernorm.weight`,
    /// `norm.weight`, `q_norm.weight`, …), `ln_f.weight` / `ln_1.weight`-style GPT-2
    /// norms (a component starting `ln`), or names an embedding table
    /// (`embed_tokens.weight`, `embed_positions.weight`, `wte.weight`, `wpe.weight`),
    /// or if the tensor has rank < 2 (any other scale or bias vector).
    public static func excludesWeightDecay(name: String, rank: Int) -> Bool {
        if rank < 2 { return true }
        let parts = name.split(separator: ".")
        let last = parts.last.map(String.init) ?? name
        if last.hasSuffix("bias") { return true }
        if last == "weight" && parts.count >= 2 {
            let module = String(parts[parts.count - 2])
            if module.hasSuffix("norm") || module.hasPrefix("ln") { return true }
            if module.hasPrefix("embed") || module == "wte" || module == "wpe" { return true }
        }
        return false
    }

    /// Two groups: decayed (`weightDecay`) and not decayed (`excludesWeightDecay`).
    /// A tensor listed under several names (tied embedding and output head) is kept
    /// once, under its first name, and not decayed if any of its names is excluded.
    /// Empty groups are dropped.
    public static func defaultGroups(_ named: [(name: String, tensor: Tensor)], weightDecay: Double) -> [ParameterGroup] {
        var order: [ObjectIdentifier] = []
        var first: [ObjectIdentifier: (name: String, tensor: Tensor, noDecay: Bool)] = [:]
        for (name, t) in named {
            let id = ObjectIdentifier(t)
            let excluded = excludesWeightDecay(name: name, rank: t.rank)
            if let e = first[id] {
                first[id] = (e.name, e.tensor, e.noDecay || excluded)
            } else {
                first[id] = (name, t, excluded)
                order.append(id)
            }
        }
        var decay: [(name: String, tensor: Tensor)] = [], noDecay: [(name: String, tensor: Tensor)] = []
        for id in order {
            let e = first[id]!
            if e.noDecay { noDecay.append((e.name, e.tensor)) } else { decay.append((e.name, e.tensor)) }
        }
        return [ParameterGroup(parameters: decay, weightDecay: weightDecay),
                ParameterGroup(parameters: noDecay, weightDecay: 0)].filter { !$0.parameters.isEmpty }
    }

    /// All parameters, in group order.
    public var namedParameters: [(name: String, tensor: Tensor)] { entries.map { ($0.name, $0.tensor) } }

    /// Parameters not in `frozen`.
    public var trainableParameters: [(name: String, tensor: Tensor)] {
        entries.filter { !frozen.contains($0.name) }.map { ($0.name, $0.tensor) }
    }

    /// Updates every non-frozen parameter that has a gradient, with learning rate
    /// `lr · group.lrScale`, on the gradients times `gradientScale` (a clipping factor from
    /// `clipScale`, applied inside the update: the same bits as scaling the gradients first,
    /// one pass over them fewer). Gradients are left in place, unscaled (call `zeroGrad`).
    public func step(lr: Double, gradientScale: Float = 1) {
        stepCount += 1
        for i in entries.indices where !frozen.contains(entries[i].name) {
            guard let g = entries[i].tensor.grad else { continue }
            let p = entries[i].tensor
            if entries[i].expAvg == nil {
                entries[i].expAvg = Tensor(zeros: p.shape)
                entries[i].expAvgSq = Tensor(zeros: p.shape)
            }
            entries[i].steps += 1
            let group = groups[entries[i].group]
            OptimizerKernels.adamwStep(
                param: p, expAvg: entries[i].expAvg!, expAvgSq: entries[i].expAvgSq!, grad: g, gradScale: gradientScale,
                lr: lr * group.lrScale, beta1: config.beta1, beta2: config.beta2, eps: config.eps,
                weightDecay: group.weightDecay, step: entries[i].steps)
        }
    }

    /// The moments (exp_avg, exp_avg_sq) of parameter `tensor`, once it has taken a step
    /// (expert parallelism gathers them for checkpoints).
    func moments(of tensor: Tensor) -> (Tensor, Tensor)? {
        guard let e = entries.first(where: { $0.tensor === tensor }), let m = e.expAvg, let v = e.expAvgSq else { return nil }
        return (m, v)
    }

    /// Adds every parameter whose name satisfies `predicate` to `frozen` and returns
    /// those names (e.g. `{ $0.contains(".mlp.gate.") }` to freeze the routers).
    @discardableResult
    public func freeze(where predicate: (String) -> Bool) -> [String] {
        let names = entries.map(\.name).filter(predicate)
        frozen.formUnion(names)
        return names
    }

    /// Clears the gradients of all parameters (frozen ones included).
    public func zeroGrad() {
        for e in entries { e.tensor.zeroGrad() }
    }

    /// ‖g‖₂ over the gradients of the non-frozen parameters (nil gradients count as 0).
    public func gradientNorm() -> Double {
        Self.gradientNorm(trainableParameters.map(\.tensor))
    }

    /// Global-norm clipping of the non-frozen parameters' gradients (see the static form).
    @discardableResult
    public func clipGradients(maxNorm: Double) -> GradientClipResult {
        Self.clipGradients(trainableParameters.map(\.tensor), maxNorm: maxNorm)
    }

    /// ‖g‖₂ = √(Σ over tensors of Σ g²), each tensor's sum in double (`moe_grad_norm_sq`),
    /// tensors added in order: deterministic for any thread count. NaN/Inf if any
    /// gradient element is.
    public static func gradientNorm(_ tensors: [Tensor]) -> Double {
        var total = 0.0
        for t in tensors { if let g = t.grad { total += OptimizerKernels.sumOfSquares(g) } }
        return total.squareRoot()
    }

    /// Multiplies every existing gradient by `factor` (e.g. 1/accumulationSteps when
    /// the accumulated losses were not pre-scaled).
    public static func scaleGradients(_ tensors: [Tensor], by factor: Float) {
        for t in tensors { if let g = t.grad { OptimizerKernels.scale(g, by: factor) } }
    }

    /// Scales all gradients by c = maxNorm / (‖g‖ + 1e-6) when c < 1 (PyTorch's
    /// `clip_grad_norm_`) and returns the pre-clip norm. Leaves the gradients alone
    /// when the norm is not finite (check `isFinite` and skip the step) or when
    /// `maxNorm` is not positive (clipping off: `maxNorm <= 0` or infinite).
    @discardableResult
    public static func clipGradients(_ tensors: [Tensor], maxNorm: Double) -> GradientClipResult {
        clipGradients(tensors, norm: gradientNorm(tensors), maxNorm: maxNorm)
    }

    /// The same with the global norm computed elsewhere (expert parallelism: over the ranks).
    @discardableResult
    public static func clipGradients(_ tensors: [Tensor], norm: Double, maxNorm: Double) -> GradientClipResult {
        let clip = clipScale(norm: norm, maxNorm: maxNorm)
        if clip.scale != 1 { for t in tensors { if let g = t.grad { OptimizerKernels.scale(g, by: clip.scale) } } }
        return clip
    }

    /// The factor `clipGradients` would scale the gradients by, without scaling them: hand it
    /// to `step(lr:gradientScale:)`. 1 when the norm is within `maxNorm`, not finite, or
    /// clipping is off.
    public static func clipScale(norm: Double, maxNorm: Double) -> GradientClipResult {
        guard norm.isFinite, maxNorm > 0, maxNorm.isFinite else { return GradientClipResult(norm: norm, scale: 1) }
        let coef = maxNorm / (norm + 1e-6)
        return GradientClipResult(norm: norm, scale: coef < 1 ? Float(coef) : 1)
    }

    // MARK: - State

    /// Key of the optimiser's step counter in the exported state.
    public static let stepCountKey = "optimizer.step"

    /// The state as named tensors, for a safetensors file:
    /// `optimizer.step` (int32 [1]), and for each parameter that has taken a step
    /// `state.<name>.exp_avg`, `state.<name>.exp_avg_sq` (float32, the parameter's
    /// shape) and `state.<name>.step` (int32 [1]). The tensors are copies.
    public func exportState() -> [String: Tensor] {
        var out: [String: Tensor] = [Self.stepCountKey: Self.intTensor(stepCount)]
        for e in entries {
            guard let m = e.expAvg, let v = e.expAvgSq else { continue }
            out["state.\(e.name).exp_avg"] = m.copy()
            out["state.\(e.name).exp_avg_sq"] = v.copy()
            out["state.\(e.name).step"] = Self.intTensor(e.steps)
        }
        return out
    }

    /// Restores a state written by `exportState` (for the same parameter names and
    /// shapes). Parameters without state in `state` start fresh.
    /// - Throws: `invalidArgument` naming the key for an unknown parameter, a missing
    ///   companion tensor, or a wrong shape or dtype. Nothing is changed on error.
    public func importState(_ state: [String: Tensor]) throws {
        let op = "AdamW.importState"
        guard let sc = state[Self.stepCountKey], sc.dtype == .int32, sc.count == 1 else {
            throw SparseMoEError.invalidArgument(op: op, message: "missing '\(Self.stepCountKey)' (int32, one element)")
        }
        let index = Dictionary(uniqueKeysWithValues: entries.indices.map { (entries[$0].name, $0) })
        var restored: [Int: (Tensor, Tensor, Int)] = [:]
        for key in state.keys.sorted() where key != Self.stepCountKey {
            guard key.hasPrefix("state."), let dot = key.lastIndex(of: ".") else {
                throw SparseMoEError.invalidArgument(op: op, message: "unexpected key '\(key)'")
            }
            let suffix = key[key.index(after: dot)...]
            let name = String(key[key.index(key.startIndex, offsetBy: 6)..<dot])
            guard ["exp_avg", "exp_avg_sq", "step"].contains(suffix) else {
                throw SparseMoEError.invalidArgument(op: op, message: "unexpected key '\(key)'")
            }
            guard let i = index[name] else {
                throw SparseMoEError.invalidArgument(op: op, message: "'\(key)' names parameter '\(name)', which this optimiser does not have")
            }
            guard restored[i] == nil else { continue }
            guard let m = state["state.\(name).exp_avg"], let v = state["state.\(name).exp_avg_sq"],
                  let s = state["state.\(name).step"] else {
                throw SparseMoEError.invalidArgument(op: op, message: "parameter '\(name)' needs exp_avg, exp_avg_sq and step; some are missing")
            }
            let shape = entries[i].tensor.shape
            guard m.shape == shape, v.shape == shape, m.dtype == .float32, v.dtype == .float32 else {
                throw SparseMoEError.invalidArgument(
                    op: op, message: "state of '\(name)': exp_avg \(m.shape) \(m.dtype), exp_avg_sq \(v.shape) \(v.dtype); expected \(shape) float32")
            }
            guard s.dtype == .int32, s.count == 1, s.int32s[0] >= 1 else {
                throw SparseMoEError.invalidArgument(op: op, message: "'state.\(name).step' must be an int32 step count ≥ 1")
            }
            restored[i] = (m.copy(), v.copy(), Int(s.int32s[0]))
        }
        for i in entries.indices {
            if let (m, v, s) = restored[i] {
                entries[i].expAvg = m; entries[i].expAvgSq = v; entries[i].steps = s
            } else {
                entries[i].expAvg = nil; entries[i].expAvgSq = nil; entries[i].steps = 0
            }
        }
        stepCount = Int(sc.int32s[0])
    }

    private static func intTensor(_ v: Int) -> Tensor {
        Tensor(indices: [Int32(clamping: v)], shape: [1])
    }
}

import SparseMoECore

/// Tensor names of a Hugging Face checkpoint ↔ the library's parameter names.
///
/// The library names its parameters like transformers (`model.layers.{i}.self_attn.q_proj.weight`,
/// `model.norm.weight`, `lm_head.weight`, dense `mlp.gate_proj.weight`, ...); these pass through
/// unchanged. The differences are all in the MoE block of layer i:
///
/// | library                                   | checkpoint                                                        |
/// |-------------------------------------------|-------------------------------------------------------------------|
/// | `mlp.gate.weight` `[E, C]`                | `{moeBlock}.gate.weight` (Mixtral `block_sparse_moe`, others `mlp`) |
/// | `mlp.experts.gate_proj` `[E, F, C]`       | `experts.{e}.gate_proj.weight` `[F, C]` (Mixtral `experts.{e}.w1.weight`), or the first F rows of fused `mlp.experts.gate_up_proj` `[E, 2F, C]` |
/// | `mlp.experts.up_proj` `[E, F, C]`         | `experts.{e}.up_proj.weight` (Mixtral `w3`), or the last F rows of `gate_up_proj` |
/// | `mlp.experts.down_proj` `[E, C, F]`       | `experts.{e}.down_proj.weight` `[C, F]` (Mixtral `w2`), or fused `mlp.experts.down_proj` `[E, C, F]` |
/// | `mlp.shared_expert.*`                     | `mlp.{sharedExpert}.*` (DeepSeek-V3 `shared_experts`; Qwen2-MoE unchanged) |
///
/// What differs per family is its `HFWeightNames`.
///
/// The fused layout is transformers 5's in-memory one (`gate_up_proj` `[E, 2·F, C]`, gate rows
/// first, then up; `down_proj` `[E, C, F]`); transformers 5 writes checkpoints per expert, as
/// transformers 4 did, and so does `HuggingFaceModel.save`.
public struct HFWeightMap: Sendable {
    public let names: HFWeightNames
    public let numExperts: Int

    /// Which stacked expert matrix.
    public enum ExpertMatrix: String, Sendable, CaseIterable {
        case gate = "gate_proj", up = "up_proj", down = "down_proj"
    }

    /// Where one library parameter is stored in a checkpoint.
    public enum Location: Equatable, Sendable {
        /// One tensor of the same shape.
        case tensor(String)
        /// Expert e's slice `[F, C]` (or `[C, F]`) is the tensor `perExpert[e]`; alternatively one of
        /// the `fused` `gate_up_proj` names `[E, 2F, C]` (gate: rows 0..<F, up: rows F..<2F of each
        /// expert), or the whole stacked tensor under `stacked`.
        case experts(matrix: ExpertMatrix, perExpert: [String], fused: [String], stacked: String)
    }

    public init(names: HFWeightNames, numExperts: Int) {
        self.names = names
        self.numExperts = numExperts
    }

    /// The map of `family`'s checkpoints.
    public init<F: HuggingFaceFamily>(family: F.Type, numExperts: Int) {
        self.init(names: F.weightNames, numExperts: numExperts)
    }

    /// Splits `model.layers.{i}.rest` into (i, rest).
    static func layerParts(_ name: String) -> (Int, String)? {
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        let tail = name.dropFirst(prefix.count)
        guard let dot = tail.firstIndex(of: "."), let i = Int(tail[..<dot]) else { return nil }
        return (i, String(tail[tail.index(after: dot)...]))
    }

    /// The checkpoint location of library parameter `name`.
    public func location(of name: String) -> Location {
        guard let (i, rest) = Self.layerParts(name) else { return .tensor(name) }
        let layer = "model.layers.\(i)."
        let moeBlock = names.moeBlock
        if rest == "mlp.gate.weight" || rest == "mlp.gate.e_score_correction_bias" {
            return .tensor(layer + moeBlock + rest.dropFirst(3))
        }
        if let m = ExpertMatrix.allCases.first(where: { rest == "mlp.experts.\($0.rawValue)" }) {
            let per = (0..<numExperts).map { e in
                layer + moeBlock + ".experts.\(e)." + names.expertName(m) + ".weight"
            }
            // transformers 5 module path is `mlp.experts` for every architecture (Mixtral renamed).
            let fusedNames = Array(Set([layer + "mlp.experts.", layer + moeBlock + ".experts."]).sorted())
                .map { $0 + (m == .down ? "down_proj" : "gate_up_proj") }
            return .experts(matrix: m, perExpert: per, fused: m == .down ? [] : fusedNames,
                            stacked: layer + "mlp.experts." + m.rawValue)
        }
        if names.sharedExpert != "shared_expert", rest.hasPrefix("mlp.shared_expert.") {
            return .tensor(layer + "mlp.\(names.sharedExpert)." + rest.dropFirst("mlp.shared_expert.".count))
        }
        return .tensor(name)
    }

    /// The library parameter that checkpoint tensor `hfName` belongs to, with the expert
    /// index for per-expert tensors; nil for names the library does not have.
    public func libraryName(of hfName: String) -> (name: String, expert: Int?)? {
        guard let (i, rest) = Self.layerParts(hfName) else { return (hfName, nil) }
        let layer = "model.layers.\(i)."
        var r = rest
        if names.moeBlock != "mlp", r.hasPrefix(names.moeBlock + ".") { r = "mlp." + r.dropFirst(names.moeBlock.count + 1) }
        let shared = "mlp.\(names.sharedExpert)."
        if names.sharedExpert != "shared_expert", r.hasPrefix(shared) { r = "mlp.shared_expert." + r.dropFirst(shared.count) }
        if r.hasPrefix("mlp.experts."), r.hasSuffix(".weight") {
            let parts = r.split(separator: ".")  // mlp experts {e} {matrix} weight
            if parts.count == 5, let e = Int(parts[2]), e >= 0, e < numExperts {
                let matrix = ExpertMatrix.allCases.first {
                    parts[3] == $0.rawValue || parts[3] == names.expertName($0)
                }
                if let matrix { return (layer + "mlp.experts." + matrix.rawValue, e) }
            }
            return nil
        }
        return (layer + r, nil)
    }

    /// The checkpoint tensors of a library model, per expert (the Hub layout): views of
    /// the parameters, no copies.
    public func checkpointTensors(of parameters: [(name: String, tensor: Tensor)]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, t) in parameters {
            switch location(of: name) {
            case let .tensor(hf):
                out[hf] = t
            case let .experts(_, perExpert, _, _):
                let slice = Array(t.shape.dropFirst())
                let n = slice.reduce(1, *)
                for (e, hf) in perExpert.enumerated() {
                    out[hf] = Tensor(storage: t.storage, shape: slice, offset: t.offset + e * n)
                }
            }
        }
        return out
    }
}

/// A family's checkpoint names where they differ from the library's (layer i, MoE block).
public struct HFWeightNames: Sendable, Equatable {
    /// The MoE block's module: `mlp`, Mixtral `block_sparse_moe`.
    public var moeBlock: String
    /// Per-expert matrix names (gate, up, down): `gate_proj`/`up_proj`/`down_proj`, Mixtral `w1`/`w3`/`w2`.
    public var expertGate: String
    public var expertUp: String
    public var expertDown: String
    /// The shared-expert module under `mlp`: `shared_expert`, DeepSeek-V3 `shared_experts`.
    public var sharedExpert: String

    public init(moeBlock: String = "mlp", expertGate: String = "gate_proj", expertUp: String = "up_proj",
                expertDown: String = "down_proj", sharedExpert: String = "shared_expert") {
        self.moeBlock = moeBlock
        self.expertGate = expertGate
        self.expertUp = expertUp
        self.expertDown = expertDown
        self.sharedExpert = sharedExpert
    }

    /// The checkpoint's per-expert name of `matrix`.
    public func expertName(_ matrix: HFWeightMap.ExpertMatrix) -> String {
        switch matrix {
        case .gate: return expertGate
        case .up: return expertUp
        case .down: return expertDown
        }
    }
}

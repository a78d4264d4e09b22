import Foundation
import SparseMoECore
import SparseMoENN

/// A Hugging Face model folder loaded as an ordinary `TransformerLM`, and the writer of
/// such folders.
///
/// Reading: `config.json` of a registered family (transformers 4 or 5 spelling, see
/// `HuggingFaceFamilies`, `HFCommonConfig`) and the tensors of
/// `model.safetensors` or of the shards listed in `model.safetensors.index.json`,
/// memory-mapped; F16/BF16/F64 tensors are converted to float32. Every tensor the model
/// needs must be present with its exact shape, and no other tensor may remain (apart from
/// rotary `inv_freq` buffers, DeepSeek-V3's multi-token-prediction layers and a stored
/// `lm_head.weight` of a tied model, which transformers skips too). Errors are
/// `SparseMoEError.file` naming the file and the tensor or field.
///
/// Writing: `config.json` in the architecture's Hugging Face spelling and one
/// `model.safetensors` (per-expert tensor names, float32), both replaced atomically, so
/// that `AutoModelForCausalLM.from_pretrained` loads the folder.
public struct HuggingFaceModel {
    /// The folder it was read from.
    public let directory: URL
    /// config.json decoded as its family (`MixtralConfig`, `Qwen2MoEConfig`, ...).
    public let hfConfig: any HuggingFaceFamily
    /// config.json as read, every field.
    public let rawConfig: [String: JSONValue]
    public let model: TransformerLM

    public static let configFileName = "config.json"
    /// Files copied along by `save(to:)` when present (tokenizer and generation settings).
    public static let companionFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "vocab.json", "merges.txt"]

    /// Reads the model folder at `directory`, each weight in the dtype `dtypes` chooses
    /// (default: float32, a model to train; `.asStored` keeps bf16/f16/int8/int4 tensors as
    /// the file holds them). Parameters are created from the checkpoint's tensors: nothing is
    /// initialised first, and no float32 copy is made of a tensor kept in another dtype.
    public static func load(directory: URL, dtypes: WeightDTypeChoice = .float32) throws -> HuggingFaceModel {
        let configURL = directory.appendingPathComponent(configFileName)
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw SparseMoEError.file(path: configURL.path, message: "missing: a Hugging Face model folder needs config.json")
        }
        let hf = try HuggingFaceFamilies.load(from: configURL)
        let raw: [String: JSONValue]
        do {
            raw = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: configURL))
        } catch {
            throw SparseMoEError.file(path: configURL.path, message: "malformed JSON: expected one object of fields (\(error.localizedDescription))")
        }
        try QuantizationConfig.check(raw, path: configURL.path)
        let config: TransformerConfig
        do { config = try hf.transformerConfig() } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: configURL.path, message: e.description)
        }
        let checkpoint = try SafetensorsCheckpoint(directory: directory)
        // Bytes per parameter as the weights will be held: the asked dtype, else as stored.
        let summary = checkpoint.storageSummary()
        let stored = Double(summary.reduce(0) { $0 + $1.bytes }) / Double(max(summary.reduce(0) { $0 + $1.parameters }, 1))
        let perParameter = dtypes.dtype.map { Double($0.storageBytes(shape: [1, 4096])) / 4096 } ?? min(stored, 4)
        do { try config.checkMemory(bytesPerParameter: perParameter) } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: configURL.path, message: e.description)
        }
        let model = try TransformerLM.placeholder(config: config)
        try loadWeights(into: model, from: checkpoint, map: HFWeightMap(names: type(of: hf).weightNames, numExperts: hf.common.numExperts),
                        hfConfig: hf, dtypes: dtypes)
        return HuggingFaceModel(directory: directory, hfConfig: hf, rawConfig: raw, model: model)
    }

    /// The path named in errors about tensors the checkpoint lacks: the index when sharded.
    static func checkpointLabel(_ c: SafetensorsCheckpoint) -> String {
        let index = c.directory.appendingPathComponent(SafetensorsCheckpoint.indexFileName)
        return c.files.count == 1 && c.files[SafetensorsCheckpoint.singleFileName] != nil
            ? c.directory.appendingPathComponent(SafetensorsCheckpoint.singleFileName).path : index.path
    }

    /// Fills `model`'s parameters (placeholders or float32 tensors) from the checkpoint in the
    /// dtypes `dtypes` chooses: a tensor kept in its stored dtype is copied once from the
    /// file's mapping; another dtype is converted in bounded blocks. Checks presence, shapes,
    /// finiteness and leftovers. Pages of the file are handed back after each tensor.
    static func loadWeights(into model: TransformerLM, from ckpt: SafetensorsCheckpoint, map: HFWeightMap,
                            hfConfig hf: any HuggingFaceFamily, dtypes: WeightDTypeChoice = .float32) throws {
        let label = checkpointLabel(ckpt)
        let roles = model.weightRoles()
        var consumed = Set<String>()
        var checked = Set<String>()
        func source(_ name: String, shape: [Int], for parameter: String) throws -> WeightSource {
            guard let file = ckpt.file(holding: name) else {
                throw SparseMoEError.file(path: label, message: "missing tensor '\(name)' (\(hf.modelType) parameter '\(parameter)', shape \(shape))")
            }
            let src = try WeightSource(file: file, name: name, shape: shape, parameter: parameter)
            if checked.insert(name).inserted { try src.requireFinite() }
            consumed.formUnion(src.tensorNames)
            return src
        }
        func release(_ src: WeightSource) { for n in src.tensorNames { src.file.releasePages(n) } }
        /// Gives `t` the dtype chosen for it and lets `fill` write its rows.
        func fill(_ t: Tensor, name: String, stored: DType, _ fill: (Tensor) throws -> Void) rethrows {
            let target = dtypes.dtype(for: roles[name] ?? .float32, stored: stored)
            let dest = target == t.dtype ? t : Tensor(zeros: t.shape, dtype: target)
            try fill(dest)
            if dest !== t { t.adoptStorage(of: dest) }
        }

        for (name, t) in model.namedParameters() {
            let rows = t.weightRows.rows
            switch map.location(of: name) {
            case let .tensor(hfName):
                let src = try source(hfName, shape: t.shape, for: name)
                fill(t, name: name, stored: src.dtype) { src.write(rows: 0, count: rows, into: $0, at: 0) }
                release(src)
            case let .experts(matrix, perExpert, fused, stacked):
                let (e, n, cols) = (t.shape[0], t.shape[1], t.shape[2])
                let fusedPresent = fused.filter { ckpt.info($0) != nil }
                let stackedPresent = ckpt.info(stacked) != nil
                let perPresent = perExpert.filter { ckpt.info($0) != nil }
                let forms = fusedPresent.count + (stackedPresent ? 1 : 0) + (perPresent.isEmpty ? 0 : 1)
                if forms > 1 {
                    let names = fusedPresent + (stackedPresent ? [stacked] : []) + perPresent.prefix(1)
                    throw SparseMoEError.file(path: label, message: "expert weights of '\(name)' are stored twice: \(names.map { "'\($0)'" }.joined(separator: " and "))")
                }
                if let f = fusedPresent.first {
                    // transformers 5: gate_up_proj [E, 2F, C], gate rows first.
                    let src = try source(f, shape: [e, 2 * n, cols], for: name)
                    fill(t, name: name, stored: src.dtype) { dest in
                        for x in 0..<e { src.write(rows: x * 2 * n + (matrix == .up ? n : 0), count: n, into: dest, at: x * n) }
                    }
                    release(src)
                } else if stackedPresent {
                    let src = try source(stacked, shape: t.shape, for: name)
                    fill(t, name: name, stored: src.dtype) { src.write(rows: 0, count: rows, into: $0, at: 0) }
                    release(src)
                } else {
                    let first = try source(perExpert[0], shape: [n, cols], for: "\(name)[0]")
                    try fill(t, name: name, stored: first.dtype) { dest in
                        for (x, hfName) in perExpert.enumerated() {
                            let src = x == 0 ? first : try source(hfName, shape: [n, cols], for: "\(name)[\(x)]")
                            src.write(rows: 0, count: n, into: dest, at: x * n)
                            release(src)
                        }
                    }
                }
            }
        }

        for name in ckpt.names where !consumed.contains(name) {
            if name.hasSuffix("rotary_emb.inv_freq") { continue }
            if name == "lm_head.weight" && hf.common.tieWordEmbeddings { continue }
            if let (i, _) = HFWeightMap.layerParts(name), hf.skippedCheckpointLayers.contains(i) { continue }
            let path = ckpt.file(holding: name)?.path ?? label
            let hint = map.libraryName(of: name).map { " (would be '\($0.name)')" } ?? ""
            throw SparseMoEError.file(path: path, message: "unexpected tensor '\(name)'\(hint): not part of the \(hf.modelType) model that config.json describes")
        }
        // A model holding reduced-precision or quantized weights is for inference.
        if model.parameters.contains(where: { $0.dtype != .float32 }) {
            for p in model.parameters { p.requiresGrad = false }
        }
    }

    // MARK: writing

    /// Writes `model` to `directory` (created if needed) as Hugging Face architecture
    /// family `architecture` (`MixtralConfig.self`, ...; nil = `HFConfigExport.closestArchitecture`):
    /// `config.json` + `model.safetensors`, or shards of at most `maxShardBytes` and their index.
    /// Weights are written in their storage dtypes; config.json records them
    /// (`torch_dtype`, and `quantization_config` for int8/int4, see `weightDTypeConfig`).
    /// `extraConfig` entries are added to config.json where the model does not set them
    /// (token ids, ...). Throws `invalidConfig` naming what the architecture cannot represent.
    public static func save(_ model: TransformerLM, to directory: URL, architecture: (any HuggingFaceFamily.Type)? = nil,
                            extraConfig: [String: JSONValue] = [:], maxShardBytes: Int = 4 << 30) throws {
        let type = architecture ?? HFConfigExport.closestArchitecture(model.config)
        var json = try HFConfigExport.json(for: model.config, as: type)
        for (k, v) in extraConfig where json[k] == nil { json[k] = v }
        let fm = FileManager.default
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw SparseMoEError.file(path: directory.path, message: "cannot create folder: \(error.localizedDescription)")
        }
        let map = HFWeightMap(names: type.weightNames, numExperts: model.config.moe?.numExperts ?? 0)
        var tensors = map.checkpointTensors(of: model.namedParameters())
        var counts = model.weightStorage.parametersByDType
        if type == Qwen2MoEConfig.self, model.config.moe?.sharedGating == SharedExpertGating.none {
            counts[.float32, default: 0] += Qwen2MoEConfig.addNeutralSharedExpertGates(to: &tensors, hiddenSize: model.config.hiddenSize)
        }
        json.merge(weightDTypeConfig(counts: counts), uniquingKeysWith: { new, _ in new })
        try ShardedCheckpointWriter.write(tensors.map { .init(name: $0.key, shape: $0.value.shape, dtype: $0.value.dtype) },
                                          to: directory, maxShardBytes: maxShardBytes) { tensors[$0.name]! }
        let text = configText(.object(json)) + "\n"
        try AtomicFile.write(Data(text.utf8), to: directory.appendingPathComponent(configFileName))
    }

    /// The config.json entries that say how the weights are stored: `torch_dtype` (the dtype of
    /// most matrix parameters when they are float types) and, when any weight is int8 or int4,
    /// `quantization_config` = `{"quant_method": "sparsemoe", "bits", "group_size", "scales":
    /// "<weight>_scale", "modules": {dtype: parameter count}}`, which loading checks;
    /// `counts`: the number of parameters stored in each dtype.
    static func weightDTypeConfig(counts: [DType: Int]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        let float = counts.filter { [.float32, .bfloat16, .float16].contains($0.key) }.max { $0.value < $1.value }?.key ?? .float32
        out["torch_dtype"] = .string(float == .float32 ? "float32" : float == .bfloat16 ? "bfloat16" : "float16")
        if let q = [DType.int4, .int8].first(where: { counts[$0] != nil }) {
            out["quantization_config"] = .object([
                "quant_method": .string(QuantizationConfig.method),
                "bits": .int(q == .int4 ? 4 : 8),
                "group_size": .int(q == .int4 ? DType.int4GroupSize : -1),
                "scales": .string("<weight>_scale"),
                "modules": .object(Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, JSONValue.int($0.value)) })),
            ])
        }
        return out
    }

    /// config.json text: keys sorted, two-space indent, and every `.double` written with a
    /// decimal point or exponent (transformers 5 validates field types strictly: `0` is
    /// not a float, `0.0` is).
    static func configText(_ v: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch v {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d):
            guard d.isFinite else { return "null" }
            if d == d.rounded(), abs(d) < 1e15 { return String(Int(d)) + ".0" }
            return "\(d)"
        case let .string(s): return SafetensorsWriter.jsonString(s)
        case let .array(a):
            if a.isEmpty { return "[]" }
            return "[\n" + a.map { inner + configText($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        case let .object(o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.keys.sorted().map { inner + SafetensorsWriter.jsonString($0) + ": " + configText(o[$0]!, indent: inner) }
                .joined(separator: ",\n") + "\n" + indent + "}"
        }
    }

    /// Writes this model back as its own architecture, keeping config.json's token ids and
    /// copying the tokenizer and generation files (`companionFiles`) when saving elsewhere.
    public func save(to destination: URL) throws {
        var extra: [String: JSONValue] = [:]
        for key in ["bos_token_id", "eos_token_id", "pad_token_id", "transformers_version"] { extra[key] = rawConfig[key] }
        try Self.save(model, to: destination, architecture: type(of: hfConfig), extraConfig: extra)
        guard destination.standardizedFileURL.path != directory.standardizedFileURL.path else { return }
        for name in Self.companionFiles {
            let src = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: src.path) else { continue }
            try AtomicFile.write(data, to: destination.appendingPathComponent(name))
        }
    }
}

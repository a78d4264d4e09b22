import Foundation
import SparseMoECore

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

    /// Reads the model folder at `directory`.
    public static func load(directory: URL) throws -> HuggingFaceModel {
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
        let config: TransformerConfig
        do {
            config = try hf.transformerConfig()
            try config.checkMemory()
        } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: configURL.path, message: e.description)
        }
        let model = try TransformerLM(config: config, seed: 0)
        let checkpoint = try SafetensorsCheckpoint(directory: directory)
        try loadWeights(into: model, from: checkpoint, map: HFWeightMap(names: type(of: hf).weightNames, numExperts: hf.common.numExperts),
                        hfConfig: hf)
        return HuggingFaceModel(directory: directory, hfConfig: hf, rawConfig: raw, model: model)
    }

    /// The path named in errors about tensors the checkpoint lacks: the index when sharded.
    static func checkpointLabel(_ c: SafetensorsCheckpoint) -> String {
        let index = c.directory.appendingPathComponent(SafetensorsCheckpoint.indexFileName)
        return c.files.count == 1 && c.files[SafetensorsCheckpoint.singleFileName] != nil
            ? c.directory.appendingPathComponent(SafetensorsCheckpoint.singleFileName).path : index.path
    }

    /// Copies every checkpoint tensor into `model`'s parameters; checks presence, shapes and leftovers.
    static func loadWeights(into model: TransformerLM, from ckpt: SafetensorsCheckpoint, map: HFWeightMap,
                            hfConfig hf: any HuggingFaceFamily) throws {
        let label = checkpointLabel(ckpt)
        var consumed = Set<String>()
        func info(_ name: String, shape: [Int], for parameter: String) throws -> SafetensorsTensorInfo {
            guard let info = ckpt.info(name) else {
                throw SparseMoEError.file(path: label, message: "missing tensor '\(name)' (\(hf.modelType) parameter '\(parameter)', shape \(shape))")
            }
            let path = ckpt.file(holding: name)?.path ?? label
            guard [.f32, .f16, .bf16, .f64].contains(info.dtype) else {
                throw SparseMoEError.file(path: path, message: "tensor '\(name)' has dtype \(info.dtype.rawValue), expected a floating type (F32, F16, BF16)")
            }
            guard info.shape == shape else {
                throw SparseMoEError.file(path: path, message: "tensor '\(name)' has shape \(info.shape), expected \(shape) (parameter '\(parameter)')")
            }
            return info
        }
        func read(_ name: String, shape: [Int], for parameter: String) throws -> Tensor {
            _ = try info(name, shape: shape, for: parameter)
            consumed.insert(name)
            let t = try ckpt.tensor(name)
            try requireFiniteWeights(t, name: name, path: ckpt.file(holding: name)?.path ?? label)
            return t
        }
        var fusedCache: [String: Tensor] = [:]

        for (name, t) in model.namedParameters() {
            switch map.location(of: name) {
            case let .tensor(hfName):
                try t.assign(read(hfName, shape: t.shape, for: name))
            case let .experts(matrix, perExpert, fused, stacked):
                let (e, rows, cols) = (t.shape[0], t.shape[1], t.shape[2])
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
                    let whole: Tensor
                    if let cached = fusedCache[f] { whole = cached } else {
                        whole = try read(f, shape: [e, 2 * rows, cols], for: name)
                        fusedCache[f] = whole
                    }
                    let block = rows * cols
                    for x in 0..<e {
                        (t.floats + x * block).update(from: whole.floats + x * 2 * block + (matrix == .up ? block : 0), count: block)
                    }
                } else if stackedPresent {
                    try t.assign(read(stacked, shape: t.shape, for: name))
                } else {
                    let block = rows * cols
                    for (x, hfName) in perExpert.enumerated() {
                        let src = try read(hfName, shape: [rows, cols], for: "\(name)[\(x)]")
                        (t.floats + x * block).update(from: src.floats, count: block)
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
    }

    // MARK: writing

    /// Writes `model` to `directory` (created if needed) as Hugging Face architecture
    /// family `architecture` (`MixtralConfig.self`, ...; nil = `HFConfigExport.closestArchitecture`):
    /// `config.json` + `model.safetensors`.
    /// `extraConfig` entries are added to config.json where the model does not set them
    /// (token ids, ...). Throws `invalidConfig` naming what the architecture cannot represent.
    public static func save(_ model: TransformerLM, to directory: URL, architecture: (any HuggingFaceFamily.Type)? = nil,
                            extraConfig: [String: JSONValue] = [:]) throws {
        let type = architecture ?? HFConfigExport.closestArchitecture(model.config)
        var json = try HFConfigExport.json(for: model.config, as: type)
        for (k, v) in extraConfig where json[k] == nil { json[k] = v }
        let fm = FileManager.default
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw SparseMoEError.file(path: directory.path, message: "cannot create folder: \(error.localizedDescription)")
        }
        let index = directory.appendingPathComponent(SafetensorsCheckpoint.indexFileName)
        guard !fm.fileExists(atPath: index.path) else {
            throw SparseMoEError.file(path: index.path, message: "the folder holds a sharded checkpoint, which would shadow the model.safetensors written here; save into another folder")
        }
        let map = HFWeightMap(names: type.weightNames, numExperts: model.config.moe?.numExperts ?? 0)
        let tensors = map.checkpointTensors(of: model.namedParameters())
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"],
                                    to: directory.appendingPathComponent(SafetensorsCheckpoint.singleFileName))
        let text = configText(.object(json)) + "\n"
        try AtomicFile.write(Data(text.utf8), to: directory.appendingPathComponent(configFileName))
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

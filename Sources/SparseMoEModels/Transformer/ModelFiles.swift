import Foundation
import SparseMoECore

/// Saving and loading a `TransformerLM` in the Hugging Face folder layout:
/// `config.json` (the library's `TransformerConfig`, marked `"model_type": "sparsemoe"`)
/// and `model.safetensors` (f32, the model's `namedParameters()` names). Each file is
/// written atomically (temporary file, fsync, rename).
public enum ModelFiles {
    public static let modelType = "sparsemoe"
    public static let configFileName = "config.json"

    /// Writes config.json and model.safetensors into `directory` (created if needed).
    public static func save(_ model: TransformerLM, to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = try JSONSerialization.jsonObject(with: encoder.encode(model.config)) as! [String: Any]
        object["model_type"] = modelType
        object["architectures"] = ["SparseMoEForCausalLM"]
        let json = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(json, to: directory.appendingPathComponent(configFileName))
        var tensors: [String: Tensor] = [:]
        for (name, t) in model.namedParameters() { tensors[name] = t }
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"],
                                    to: directory.appendingPathComponent(SafetensorsCheckpoint.singleFileName))
    }

    /// Whether `directory/config.json` is a library-native model.
    public static func isNative(_ directory: URL) -> Bool {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(configFileName)),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return obj["model_type"] as? String == modelType
    }

    /// Reads a library-native model folder. Every parameter must be present with its
    /// shape, and no unknown tensor may remain; errors name the file and tensor.
    public static func load(from directory: URL) throws -> TransformerLM {
        // The decoder ignores the extra Hugging Face keys (model_type, architectures).
        let configURL = directory.appendingPathComponent(configFileName)
        let config = try TransformerConfig.load(from: configURL)
        do { try config.checkMemory() } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: configURL.path, message: e.description)
        }
        // Placeholder parameters (no memory, no random draws until written): every one is
        // then filled from the file, or loading throws.
        let model = try TransformerLM.placeholder(config: config)
        let weights = try SafetensorsCheckpoint(directory: directory)
        try assign(weights, to: model, path: directory.appendingPathComponent(SafetensorsCheckpoint.singleFileName).path)
        return model
    }

    /// Copies every named parameter from `weights`; throws on missing, extra or mis-shaped tensors.
    static func assign(_ weights: SafetensorsCheckpoint, to model: TransformerLM, path: String) throws {
        let params = model.namedParameters()
        let expected = Set(params.map(\.name))
        if let extra = weights.names.first(where: { !expected.contains($0) }) {
            throw SparseMoEError.file(path: path, message: "unexpected tensor '\(extra)' (not a parameter of this model configuration)")
        }
        for (name, t) in params {
            guard let info = weights.info(name) else {
                throw SparseMoEError.file(path: path, message: "missing tensor '\(name)' with shape \(t.shape)")
            }
            guard [.f32, .f16, .bf16, .f64].contains(info.dtype) else {
                throw SparseMoEError.file(path: weights.file(holding: name)?.path ?? path,
                                          message: "tensor '\(name)' has dtype \(info.dtype.rawValue), expected a floating type (F32, F16, BF16, F64)")
            }
            let loaded = try weights.tensor(name)
            guard loaded.shape == t.shape else {
                throw SparseMoEError.file(path: path, message: "tensor '\(name)' has shape \(loaded.shape), the model expects \(t.shape)")
            }
            try requireFiniteWeights(loaded, name: name, path: path)
            t.assign(loaded)
        }
    }
}

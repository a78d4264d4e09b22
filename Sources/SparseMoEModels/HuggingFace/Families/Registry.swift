import Foundation
import SparseMoECore

/// The supported Hugging Face families, found by `model_type`.
public enum HuggingFaceFamilies {
    /// Every supported family. Also the order in which `closest(to:)` asks them to claim a
    /// library configuration: the most specific first, Mixtral (the plainest) last.
    public static let registered: [any HuggingFaceFamily.Type] = [
        DeepSeekV3Config.self,
        OLMoEConfig.self,
        Qwen3MoEConfig.self,
        Qwen2MoEConfig.self,
        MixtralConfig.self,
    ]

    /// Every `model_type` read, sorted.
    public static var supportedModelTypes: [String] { registered.flatMap { $0.modelTypes }.sorted() }

    /// The family that reads `model_type`; an unknown one is an error listing the supported ones.
    public static func family(modelType: String) throws -> any HuggingFaceFamily.Type {
        guard let f = registered.first(where: { $0.modelTypes.contains(modelType) }) else {
            throw SparseMoEError.invalidConfig(
                field: "model_type",
                message: "unsupported architecture '\(modelType)' (supported: \(supportedModelTypes.joined(separator: ", ")))")
        }
        return f
    }

    /// The family to write `config` as when none is named: the first in `registered` that claims it.
    public static func closest(to config: TransformerConfig) -> any HuggingFaceFamily.Type {
        registered.first { $0.claims(config) } ?? MixtralConfig.self
    }

    /// Decodes config JSON of any registered family; `path` is named in errors.
    public static func decode(_ data: Data, path: String = "config.json") throws -> any HuggingFaceFamily {
        let modelType = try naming(path) { try JSONDecoder().decode(ModelTypeField.self, from: data).modelType }
        let family = try naming(path) { try self.family(modelType: modelType) }
        return try family.decode(data, path: path)
    }

    /// Reads and decodes `config.json` (or any file holding it) of any registered family.
    public static func load(from url: URL) throws -> any HuggingFaceFamily {
        try decode(read(url), path: url.path)
    }

    /// Just `model_type`, to choose the family.
    private struct ModelTypeField: Decodable {
        let modelType: String
        enum CodingKeys: String, CodingKey { case modelType = "model_type" }
        init(from decoder: Decoder) throws { modelType = try ConfigFields(decoder, CodingKeys.self).required(.modelType) }
    }

    static func read(_ url: URL) throws -> Data {
        try UserFile.read(url, what: "a Hugging Face config.json")
    }

    /// Runs `body`, turning its errors into `SparseMoEError.file` naming `path`.
    static func naming<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: path, message: e.description)
        } catch {
            throw SparseMoEError.file(path: path, message: "malformed JSON: \(describeDecodingError(error))")
        }
    }
}

import Foundation
import SparseMoECore

/// Loads a model folder of either kind: library-native (`"model_type": "sparsemoe"`)
/// or a Hugging Face checkpoint of a supported architecture.
public enum ModelLoader {
    public static func load(directory: URL) throws -> TransformerLM {
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(ModelFiles.configFileName).path) else {
            throw SparseMoEError.file(path: directory.path, message: "not a model folder: no config.json")
        }
        if ModelFiles.isNative(directory) { return try ModelFiles.load(from: directory) }
        return try HuggingFaceModel.load(directory: directory).model
    }
}

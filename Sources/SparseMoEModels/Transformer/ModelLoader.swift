import Foundation
import SparseMoECore

/// Loads a model folder of either kind: library-native (`"model_type": "sparsemoe"`)
/// or a Hugging Face checkpoint of a supported architecture.
public enum ModelLoader {
    /// Reads the folder, each weight in the dtype `dtypes` picks (default float32, a model to train).
    public static func load(directory: URL, dtypes: WeightDTypeChoice = .float32) throws -> TransformerLM {
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(ModelFiles.configFileName).path) else {
            throw SparseMoEError.file(path: directory.path, message: "not a model folder: no config.json")
        }
        if ModelFiles.isNative(directory) {
            let model = try ModelFiles.load(from: directory)
            model.convertWeights(dtypes)
            return model
        }
        return try HuggingFaceModel.load(directory: directory, dtypes: dtypes).model
    }
}

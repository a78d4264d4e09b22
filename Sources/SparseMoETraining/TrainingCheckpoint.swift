import Foundation
import SparseMoECore
import SparseMoEModels

/// Resumable training checkpoints.
///
/// Layout under a run folder:
///
///     checkpoints/step-000200/config.json, model.safetensors,
///                             optimizer.safetensors, trainer_state.json
///     checkpoints/latest      (text: "step-000200")
///
/// A save writes a new step folder (each file atomically), then replaces `latest`
/// atomically. A crash or kill at any point leaves `latest` naming a complete
/// checkpoint: the previous one until the new one is whole. Older step folders
/// beyond `keep` are removed after the switch.
public enum TrainingCheckpoint {
    public static let latestFileName = "latest"
    public static let optimizerFileName = "optimizer.safetensors"
    public static let stateFileName = "trainer_state.json"

    /// Saves model, optimiser and trainer state; returns the step folder.
    @discardableResult
    public static func save(_ trainer: Trainer, to directory: URL, keep: Int = 2) throws -> URL {
        let name = String(format: "step-%06d", trainer.step)
        let folder = directory.appendingPathComponent(name)
        try writeFiles(trainer, to: folder)
        try AtomicFile.write(Data(name.utf8), to: directory.appendingPathComponent(latestFileName))
        try prune(directory, keep: keep, current: name)
        return folder
    }

    /// Writes the checkpoint files into `folder` without switching `latest` (the first
    /// half of `save`; tests use it to simulate a crash before the switch).
    package static func writeFiles(_ trainer: Trainer, to folder: URL) throws {
        try ModelFiles.save(trainer.model, to: folder)
        try SafetensorsWriter.write(trainer.optimizer.exportState(), metadata: ["format": "sparsemoe-adamw"],
                                    to: folder.appendingPathComponent(optimizerFileName))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(trainer.state), to: folder.appendingPathComponent(stateFileName))
    }

    /// The folder `latest` points to, or `directory` itself when it is a model folder.
    public static func resolve(_ directory: URL) throws -> URL {
        let latest = directory.appendingPathComponent(latestFileName)
        if let data = FileManager.default.contents(atPath: latest.path) {
            let name = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return directory.appendingPathComponent(name)
        }
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent(ModelFiles.configFileName).path) {
            return directory
        }
        throw SparseMoEError.file(path: directory.path, message: "not a checkpoint: no '\(latestFileName)' file and no config.json")
    }

    /// Loads the trainer state saved in a step folder.
    public static func loadState(_ folder: URL) throws -> TrainerState {
        let url = folder.appendingPathComponent(stateFileName)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw SparseMoEError.file(path: url.path, message: "missing trainer state (a model folder, not a training checkpoint?)")
        }
        do { return try JSONDecoder().decode(TrainerState.self, from: data) } catch {
            throw SparseMoEError.file(path: url.path, message: "malformed trainer state: \(error)")
        }
    }

    /// Restores optimiser and trainer state into `trainer`, whose model was loaded from `folder`.
    public static func restore(_ trainer: Trainer, from folder: URL) throws {
        let state = try loadState(folder)
        let optimizer = try SafetensorsFile(url: folder.appendingPathComponent(optimizerFileName))
        try trainer.optimizer.importState(optimizer.allTensors())
        try trainer.restore(state)
    }

    static func prune(_ directory: URL, keep: Int, current: String) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let steps = names.filter { $0.hasPrefix("step-") }.sorted()
        for old in steps.dropLast(max(keep, 1)) where old != current {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(old))
        }
    }
}

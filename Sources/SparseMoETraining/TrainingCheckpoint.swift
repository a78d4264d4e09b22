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
/// beyond `keep` are removed after the switch. The trainer state records a checksum of
/// every other file of its folder; `resolveVerified` skips a damaged checkpoint for the
/// newest older one that verifies.
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
        var state = trainer.state
        state.checksums = try checksums(in: folder)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(state), to: folder.appendingPathComponent(stateFileName))
    }

    /// FNV-1a 64 of a file's bytes, as 16 hex digits.
    static func checksum(of url: URL) throws -> String {
        let data = try Data(contentsOf: url, options: .mappedIfSafe)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        data.withUnsafeBytes { raw in
            for b in raw { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Checksums of every file in `folder` except the trainer state.
    static func checksums(in folder: URL) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name != stateFileName {
            var isDirectory: ObjCBool = false
            let url = folder.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            out[name] = try checksum(of: url)
        }
        return out
    }

    /// Throws, saying what is wrong, unless the step folder's trainer state reads and every
    /// file matches the checksum recorded at write time (older checkpoints without
    /// checksums: the state reads and the optimiser and model config files exist).
    public static func verify(_ folder: URL) throws {
        let state = try loadState(folder)
        guard let sums = state.checksums else {
            for name in [optimizerFileName, ModelFiles.configFileName]
            where !FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) {
                throw SparseMoEError.file(path: folder.appendingPathComponent(name).path, message: "missing")
            }
            return
        }
        for (name, sum) in sums.sorted(by: { $0.key < $1.key }) {
            let url = folder.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw SparseMoEError.file(path: url.path, message: "missing")
            }
            guard try checksum(of: url) == sum else {
                throw SparseMoEError.file(path: url.path, message: "damaged (checksum differs from the one recorded when it was written)")
            }
        }
    }

    /// The checkpoint to resume from: the one `latest` names when it verifies, else the
    /// newest older step folder that does. `skipped` lists each damaged checkpoint passed
    /// over with the reason. A model folder (no `latest`, no step folders) is returned as is.
    public static func resolveVerified(_ directory: URL) throws -> (folder: URL, skipped: [String]) {
        let latest = FileManager.default.contents(atPath: directory.appendingPathComponent(latestFileName).path)
            .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        let steps = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasPrefix("step-") }.sorted(by: >)
        var candidates = steps
        if let latest { candidates = [latest] + steps.filter { $0 < latest } }
        if candidates.isEmpty { return (try resolve(directory), []) }
        var skipped: [String] = []
        for name in candidates {
            let folder = directory.appendingPathComponent(name)
            do {
                try verify(folder)
                return (folder, skipped)
            } catch {
                skipped.append("\(name): \(error)")
            }
        }
        throw SparseMoEError.file(path: directory.path, message: "no intact checkpoint to resume from (\(skipped.joined(separator: "; ")))")
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
        let url = folder.appendingPathComponent(optimizerFileName)
        let optimizer = try SafetensorsFile(url: url)
        // A tensor of the wrong dtype or shape: the error names the file too.
        do { try trainer.optimizer.importState(optimizer.allTensors()) } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: url.path, message: e.description)
        }
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

import Foundation
import SparseMoECore

/// Writes a model's tensors as a Hugging Face checkpoint, one tensor produced at a time, so
/// that a model larger than memory (random weights at real size, a conversion) never has to
/// be held whole.
///
/// Every tensor's size is known from its shape and dtype up front, so the shards are planned
/// before anything is written: tensors in name order, a new shard when the next tensor would
/// pass `maxShardBytes`. One shard is written as `model.safetensors`; several as
/// `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json`
/// (`{"metadata": {"total_size": …}, "weight_map": {name: shard}}`). Each file is written
/// atomically, and each tensor is produced just before its bytes are written and released
/// after: memory holds one tensor at a time.
package enum ShardedCheckpointWriter {
    /// One tensor to write: its name, shape and storage dtype (int8/int4 add a `_scale` tensor).
    package struct Entry: Sendable {
        package var name: String
        package var shape: [Int]
        package var dtype: DType
        package init(name: String, shape: [Int], dtype: DType) {
            self.name = name
            self.shape = shape
            self.dtype = dtype
        }
        package var bytes: Int { dtype.storageBytes(shape: shape) }
    }

    /// Writes `entries` into `directory` (which must exist); `produce` returns each tensor
    /// (shape and dtype as the entry says); `progress(bytesWritten, totalBytes)` after each shard.
    /// Returns the file names written.
    @discardableResult
    package static func write(_ entries: [Entry], to directory: URL, maxShardBytes: Int = 4 << 30,
                              metadata: [String: String] = ["format": "pt"],
                              produce: (Entry) throws -> Tensor,
                              progress: ((Int, Int) -> Void)? = nil) throws -> [String] {
        let sorted = entries.sorted { $0.name < $1.name }
        var shards: [[Entry]] = [[]]
        var size = 0
        for e in sorted {
            if size > 0 && size + e.bytes > maxShardBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(e)
            size += e.bytes
        }
        let total = sorted.reduce(0) { $0 + $1.bytes }
        let names = shards.count == 1 ? [SafetensorsCheckpoint.singleFileName]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        let index = directory.appendingPathComponent(SafetensorsCheckpoint.indexFileName)
        if shards.count == 1 && FileManager.default.fileExists(atPath: index.path) {
            throw SparseMoEError.file(path: index.path, message: "the folder holds a sharded checkpoint, which would shadow the model.safetensors written here; save into another folder")
        }
        var written = 0
        var weightMap: [String: String] = [:]
        for (shard, file) in zip(shards, names) {
            let byName = Dictionary(uniqueKeysWithValues: shard.map { ($0.name, $0) })
            for e in shard {
                weightMap[e.name] = file
                if e.dtype.scaleDType != nil { weightMap[WeightSource.scaleName(e.name)] = file }
            }
            try SafetensorsWriter.write(streaming: shard.map { ($0.name, $0.shape, $0.dtype) }, metadata: metadata,
                                        to: directory.appendingPathComponent(file)) { try produce(byName[$0]!) }
            written += shard.reduce(0) { $0 + $1.bytes }
            progress?(written, total)
        }
        if shards.count > 1 {
            let object: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(data, to: index)
        }
        return names + (shards.count > 1 ? [SafetensorsCheckpoint.indexFileName] : [])
    }
}

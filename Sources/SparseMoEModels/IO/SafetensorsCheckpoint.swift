import Foundation
import SparseMoECore

/// The tensors of a model folder, in one file or sharded.
///
/// - one file: `model.safetensors`;
/// - sharded: `model.safetensors.index.json` = `{"metadata": {...}, "weight_map": {tensor name: shard file name}}`
///   next to the shard files (`model-00001-of-00002.safetensors`, ...).
///
/// Opening checks that every shard named in the index exists and parses, that every
/// tensor named in the weight map is in the shard the map names, and that no tensor
/// appears in two shards. Shards may hold tensors the map does not name; they are
/// ignored (as transformers does) but reported by `unindexedTensors`.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public let directory: URL
    /// Open shard files by file name.
    public let files: [String: SafetensorsFile]
    /// Tensor name → shard file name.
    public let weightMap: [String: String]
    /// Tensors present in a shard but absent from the weight map, as "file: name".
    public let unindexedTensors: [String]

    /// Opens the checkpoint in `directory` (index file first, else the single file).
    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let indexURL = directory.appendingPathComponent(Self.indexFileName)
        let singleURL = directory.appendingPathComponent(Self.singleFileName)
        if fm.fileExists(atPath: indexURL.path) {
            let map = try Self.readIndex(indexURL)
            var files: [String: SafetensorsFile] = [:]
            for shard in Set(map.values).sorted() {
                guard !shard.contains("/"), shard != "..", !shard.isEmpty else {
                    throw SparseMoEError.file(path: indexURL.path, message: "weight_map names shard '\(shard)', expected a file name inside the model folder")
                }
                let url = directory.appendingPathComponent(shard)
                guard fm.fileExists(atPath: url.path) else {
                    let tensor = map.first { $0.value == shard }!.key
                    throw SparseMoEError.file(path: indexURL.path, message: "shard '\(shard)' (holding tensor '\(tensor)') does not exist")
                }
                files[shard] = try SafetensorsFile(url: url)
            }
            for (name, shard) in map.sorted(by: { $0.key < $1.key }) where files[shard]!.info(name) == nil {
                throw SparseMoEError.file(path: files[shard]!.path, message: "tensor '\(name)' is listed in \(Self.indexFileName) but missing from this shard")
            }
            var seen: [String: String] = [:]
            var unindexed: [String] = []
            for shard in files.keys.sorted() {
                for name in files[shard]!.names {
                    if let other = seen[name] {
                        throw SparseMoEError.file(path: directory.appendingPathComponent(shard).path, message: "tensor '\(name)' is stored in two shards ('\(other)' and '\(shard)')")
                    }
                    seen[name] = shard
                    if map[name] == nil { unindexed.append("\(shard): \(name)") }
                }
            }
            self.files = files
            self.weightMap = map
            self.unindexedTensors = unindexed
        } else if fm.fileExists(atPath: singleURL.path) {
            let file = try SafetensorsFile(url: singleURL)
            self.files = [Self.singleFileName: file]
            self.weightMap = Dictionary(uniqueKeysWithValues: file.names.map { ($0, Self.singleFileName) })
            self.unindexedTensors = []
        } else {
            throw SparseMoEError.file(path: directory.path, message: "no \(Self.singleFileName) or \(Self.indexFileName) in this folder")
        }
    }

    /// All tensor names, sorted.
    public var names: [String] { weightMap.keys.sorted() }

    /// Header entry of `name`, or nil.
    public func info(_ name: String) -> SafetensorsTensorInfo? {
        weightMap[name].flatMap { files[$0]?.info(name) }
    }

    /// The file holding `name`, or nil.
    public func file(holding name: String) -> SafetensorsFile? {
        weightMap[name].flatMap { files[$0] }
    }

    /// Reads and converts tensor `name` (see `SafetensorsFile.tensor`).
    public func tensor(_ name: String) throws -> Tensor {
        guard let file = file(holding: name) else {
            throw SparseMoEError.file(path: directory.path, message: "tensor '\(name)' not found in the checkpoint (\(weightMap.count) tensors)")
        }
        return try file.tensor(name)
    }

    /// Sum of the element counts of every indexed tensor.
    public var totalElements: Int {
        weightMap.keys.reduce(0) { $0 + (info($1)?.elementCount ?? 0) }
    }

    static func readIndex(_ url: URL) throws -> [String: String] {
        struct Index: Decodable { let weight_map: [String: String] }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SparseMoEError.file(path: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(Index.self, from: data).weight_map
        } catch {
            throw SparseMoEError.file(path: url.path, message: "malformed index: \(describeDecodingError(error)) (expected {\"weight_map\": {tensor name: shard file}})")
        }
    }
}

import Foundation
import SparseMoECore

/// A batch of causal-LM windows: `inputs[b, t] = stream[s_b + t]`,
/// `targets[b, t] = stream[s_b + t + 1]` (the next token), both int32 `[B, T]`.
/// `starts[b]` = s_b is the window's offset in the dataset's whole token stream, so
/// per-position labels (e.g. `SyntheticCorpus.taskIDs[s_b + t]`) can be looked up.
public struct LMBatch {
    public let inputs: Tensor
    public let targets: Tensor
    public let starts: [Int]
    public var batchSize: Int { inputs.shape[0] }
    public var sequenceLength: Int { inputs.shape[1] }
}

/// Which part of a `TextDataset` to read.
public enum DatasetSplit: String, Sendable, Codable, CaseIterable {
    case train, validation
}

/// A token stream split into a training part (the head) and a validation part
/// (the last `validationFraction` of the tokens), read as windows of T+1 tokens.
///
/// - `randomBatch` samples B window starts uniformly from a split (explicit RNG).
/// - `evaluationBatches` walks a split in order with windows starting at 0, T, 2T, …
///   (non-overlapping inputs; each window's last target is the next window's first
///   input), deterministic, for validation loss.
/// Each non-empty split must hold at least T+1 tokens.
public struct TextDataset: Sendable {
    /// The whole stream, training part first.
    public let tokens: [Int32]
    /// T: tokens per input sequence.
    public let sequenceLength: Int
    /// Token ranges of the splits in `tokens`.
    public let trainRange: Range<Int>
    public let validationRange: Range<Int>

    /// Splits `tokens`: validation = the last `round(n · validationFraction)` tokens.
    /// `validationFraction` in [0, 1); 0 means no validation split.
    /// - Throws: `invalidConfig` if T < 1, the fraction is out of range, or a non-empty
    ///   split has fewer than T+1 tokens (the message gives both numbers).
    public init(tokens: [Int32], sequenceLength: Int, validationFraction: Double = 0.1,
                source: String = "data") throws {
        guard sequenceLength >= 1 else {
            throw SparseMoEError.invalidConfig(field: "sequence_length", message: "must be at least 1, got \(sequenceLength)")
        }
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw SparseMoEError.invalidConfig(
                field: "validation_fraction", message: "must be in [0, 1), got \(validationFraction)")
        }
        let n = tokens.count
        let nVal = Int((Double(n) * validationFraction).rounded())
        let nTrain = n - nVal
        let need = sequenceLength + 1
        func short(_ split: String, _ have: Int) -> String {
            "needs at least T+1 = \(need) tokens per split, the \(split) split of \(source) has \(have) (of \(n) tokens, validation fraction \(validationFraction))"
        }
        guard nTrain >= need else { throw SparseMoEError.invalidConfig(field: "data", message: short("training", nTrain)) }
        guard nVal == 0 || nVal >= need else {
            throw SparseMoEError.invalidConfig(field: "data", message: short("validation", nVal))
        }
        self.tokens = tokens
        self.sequenceLength = sequenceLength
        self.trainRange = 0..<nTrain
        self.validationRange = nTrain..<n
    }

    /// Reads a text file as bytes (`ByteTokenizer`: one token per byte) and splits it.
    /// A named pipe is read to its end; devices (`/dev/null`, `/dev/zero`) and sockets are
    /// refused.
    /// - Throws: `SparseMoEError.file` if the file is missing, unreadable, a directory or a
    ///   device, or holds fewer bytes than `minimumTokens` (the message gives both numbers
    ///   and why that many are needed).
    public init(contentsOf path: String, sequenceLength: Int, validationFraction: Double = 0.1) throws {
        let need = Self.minimumTokens(sequenceLength: sequenceLength, validationFraction: validationFraction)
        let needs = "--data needs a text file of at least \(need) bytes (one token per byte: T+1 = \(sequenceLength + 1) tokens "
            + (validationFraction > 0 ? "in each of the training split and the validation split, the last \(validationFraction * 100)% of the file)"
                                      : "for one batch)")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw SparseMoEError.file(path: path, message: "no such file; pass an existing text file with --data")
        }
        guard !isDirectory.boolValue else {
            throw SparseMoEError.file(path: path, message: "is a directory; \(needs)")
        }
        var info = stat()
        if stat(path, &info) == 0 {
            let type = info.st_mode & S_IFMT
            if type != S_IFREG && type != S_IFIFO {
                let kind = type == S_IFCHR ? "a character device" : type == S_IFBLK ? "a block device" : type == S_IFSOCK ? "a socket" : "not a regular file"
                throw SparseMoEError.file(path: path, message: "is \(kind), not a text file\(path == "/dev/null" ? " (it holds 0 bytes)" : ""); \(needs)")
            }
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw SparseMoEError.file(path: path, message: "is not readable (permission denied); \(needs)")
        }
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw SparseMoEError.file(path: path, message: "cannot be read (\(error.localizedDescription)); \(needs)")
        }
        guard !data.isEmpty else {
            throw SparseMoEError.file(path: path, message: "holds 0 bytes (the file is empty); \(needs)")
        }
        do {
            try self.init(tokens: ByteTokenizer().encode(bytes: data), sequenceLength: sequenceLength,
                          validationFraction: validationFraction, source: "the file")
        } catch let SparseMoEError.invalidConfig(field, message) where field == "data" {
            throw SparseMoEError.file(path: path, message: "holds \(data.count) bytes: \(message); \(needs)")
        }
    }

    /// The fewest tokens n that `init(tokens:)` accepts: the training split n − v and the
    /// validation split v = round(n · fraction) each hold T+1 tokens, or v = 0.
    /// (Invalid T or fractions give T+1; `init` reports those.)
    public static func minimumTokens(sequenceLength: Int, validationFraction f: Double) -> Int {
        let need = MemoryBudget.sum([max(sequenceLength, 0), 1])
        guard need < Int.max / 4, f > 0, f < 1 else { return need }
        func ok(_ n: Int) -> Bool {
            let v = Int((Double(n) * f).rounded())
            return n - v >= need && (v == 0 || v >= need)
        }
        if ok(need) { return need }
        // Both splits need T+1 tokens: n·f ≥ T+½ and n·(1 − f) ≥ T+½, up to rounding.
        let estimate = (Double(need) - 0.5) / min(f, 1 - f) - 2
        var n = estimate < Double(Int.max / 4) ? max(need, Int(estimate)) : Int.max / 4
        while !ok(n) && n < Int.max / 4 { n += 1 }
        return n
    }

    /// The token range of a split.
    public func range(_ split: DatasetSplit) -> Range<Int> {
        split == .train ? trainRange : validationRange
    }

    /// Number of possible window starts in a split: `count − T` (0 for an empty split).
    public func windowCount(_ split: DatasetSplit) -> Int {
        max(0, range(split).count - sequenceLength)
    }

    /// B windows with starts drawn uniformly (with replacement) from the split, in
    /// order b = 0 ..< B, each start one `rng.int(below: count − T)` draw.
    public func randomBatch(_ split: DatasetSplit = .train, batchSize: Int,
                            using rng: inout RandomGenerator) throws -> LMBatch {
        try checkBatch(split, batchSize)
        let r = range(split)
        let starts = (0..<batchSize).map { _ in r.lowerBound + rng.int(below: windowCount(split)) }
        return batch(starts: starts)
    }

    /// Number of sequential evaluation windows of a split: ⌊(count − 1) / T⌋.
    public func evaluationWindowCount(_ split: DatasetSplit) -> Int {
        let n = range(split).count
        return n == 0 ? 0 : (n - 1) / sequenceLength
    }

    /// The split's sequential windows (starts 0, T, 2T, … within the split), grouped in
    /// batches of up to B (the last may be smaller); at most `maxBatches` batches.
    public func evaluationBatches(_ split: DatasetSplit = .validation, batchSize: Int,
                                  maxBatches: Int? = nil) throws -> EvaluationBatches {
        try checkBatch(split, batchSize)
        let windows = evaluationWindowCount(split)
        let batches = (windows + batchSize - 1) / batchSize
        return EvaluationBatches(dataset: self, base: range(split).lowerBound, windows: windows,
                                 batchSize: batchSize, batchCount: min(batches, maxBatches ?? batches))
    }

    /// Builds the batch of windows starting at the given stream offsets (each with
    /// T+1 tokens inside `tokens`).
    public func batch(starts: [Int]) -> LMBatch {
        let b = starts.count, t = sequenceLength
        let inputs = Tensor(zeros: [b, t], dtype: .int32), targets = Tensor(zeros: [b, t], dtype: .int32)
        let ip = inputs.int32s, tp = targets.int32s
        tokens.withUnsafeBufferPointer { src in
            for (row, s) in starts.enumerated() {
                precondition(s >= 0 && s + t < src.count, "window start \(s) leaves no T+1 = \(t + 1) tokens")
                (ip + row * t).update(from: src.baseAddress! + s, count: t)
                (tp + row * t).update(from: src.baseAddress! + s + 1, count: t)
            }
        }
        return LMBatch(inputs: inputs, targets: targets, starts: starts)
    }

    private func checkBatch(_ split: DatasetSplit, _ batchSize: Int) throws {
        guard batchSize >= 1 else {
            throw SparseMoEError.invalidConfig(field: "batch_size", message: "must be at least 1, got \(batchSize)")
        }
        guard windowCount(split) > 0 else {
            throw SparseMoEError.invalidArgument(
                op: "TextDataset", message: "the \(split.rawValue) split is empty (validation fraction 0?); it needs at least T+1 = \(sequenceLength + 1) tokens")
        }
    }
}

/// Deterministic sequence of evaluation batches over one split.
public struct EvaluationBatches: Sequence, IteratorProtocol {
    let dataset: TextDataset
    let base: Int
    let windows: Int
    let batchSize: Int
    /// Number of batches this sequence yields.
    public let batchCount: Int
    private var next_ = 0

    init(dataset: TextDataset, base: Int, windows: Int, batchSize: Int, batchCount: Int) {
        self.dataset = dataset; self.base = base; self.windows = windows
        self.batchSize = batchSize; self.batchCount = batchCount
    }

    public mutating func next() -> LMBatch? {
        guard next_ < batchCount else { return nil }
        let first = next_ * batchSize
        let last = Swift.min(first + batchSize, windows)
        next_ += 1
        return dataset.batch(starts: (first..<last).map { base + $0 * dataset.sequenceLength })
    }
}

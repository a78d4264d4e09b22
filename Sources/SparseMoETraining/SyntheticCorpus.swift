import SparseMoECore

/// A task of the synthetic corpus. Each corpus line is `"<marker>: <problem>|<answer>\n"`
/// (arithmetic writes `=` instead of `|`), so the marker at the start of a line names
/// the task, and a model has to solve the problem to predict the answer bytes.
///
/// | task | line |
/// |---|---|
/// | `arithmetic` | `math: 12+7=19`, `math: 40-13=27`, `math: 7*8=56` |
/// | `copy` | `copy: kqzd|kqzd` |
/// | `reverse` | `rev: kqzd|dzqk` |
/// | `brackets` | `bal: ([]){}|yes`, `bal: ([)]|no` |
/// | `lookup` | `kv: a1=xy;b7=q?b7>q` |
public enum SyntheticTask: String, CaseIterable, Codable, Sendable {
    case arithmetic = "math"
    case copy = "copy"
    case reverse = "rev"
    case brackets = "bal"
    case lookup = "kv"

    /// The text that starts every line of this task: `"rev: "`.
    public var marker: String { rawValue + ": " }

    /// Stable small integer id: the index in `allCases` (0 ..< 5).
    public var id: UInt8 { UInt8(Self.allCases.firstIndex(of: self)!) }

    /// The task with this id, or nil (e.g. for `unknownID`).
    public init?(id: UInt8) {
        guard Int(id) < Self.allCases.count else { return nil }
        self = Self.allCases[Int(id)]
    }

    /// Task id of bytes that belong to no task line.
    public static let unknownID: UInt8 = 255

    /// The task id of every byte of `text`, found from the markers: each byte of a
    /// line (its newline included) gets the id of the marker the line starts with,
    /// or `unknownID` if it starts with none. Works on any text, e.g. model samples.
    public static func taskIDs<Bytes: Collection>(of text: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        let markers = allCases.map { (Array($0.marker.utf8), $0.id) }
        let bytes = Array(text)
        var ids = [UInt8](repeating: unknownID, count: bytes.count)
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            let lineEnd = min(end + 1, bytes.count)  // include the newline
            var id = unknownID
            for (m, mid) in markers where end - start >= m.count && bytes[start..<start + m.count].elementsEqual(m) {
                id = mid
                break
            }
            for i in start..<lineEnd { ids[i] = id }
            start = lineEnd
        }
        return ids
    }
}

/// Settings of the synthetic corpus. Defaults give about 1.5 MB over all five tasks.
public struct SyntheticCorpusConfig: Codable, Sendable, Equatable {
    /// Seed of the generator: same seed, same bytes.
    public var seed: UInt64 = 0
    /// Generation stops at the first whole line at or past this many bytes.
    public var targetBytes: Int = 1_500_000
    /// Tasks to mix, each line drawn uniformly among them.
    public var tasks: [SyntheticTask] = SyntheticTask.allCases
    /// Largest operand of `+` and `-` (products use operands up to 12).
    public var maxOperand: Int = 99
    /// Longest string to copy or reverse (letters a–z), at least 1.
    public var maxStringLength: Int = 12
    /// Longest bracket sequence, at least 2.
    public var maxBracketLength: Int = 12
    /// Most key–value pairs in a lookup line, at least 1.
    public var maxPairs: Int = 5

    public init(seed: UInt64 = 0, targetBytes: Int = 1_500_000, tasks: [SyntheticTask] = SyntheticTask.allCases) {
        self.seed = seed
        self.targetBytes = targetBytes
        self.tasks = tasks
    }

    /// Throws `invalidConfig` naming the first bad field.
    public func validate() throws {
        func bad(_ field: String, _ message: String) -> SparseMoEError { .invalidConfig(field: field, message: message) }
        guard targetBytes >= 1 else { throw bad("targetBytes", "must be at least 1, got \(targetBytes)") }
        guard !tasks.isEmpty else { throw bad("tasks", "needs at least one task of \(SyntheticTask.allCases.map(\.rawValue))") }
        guard maxOperand >= 1 else { throw bad("maxOperand", "must be at least 1, got \(maxOperand)") }
        guard maxStringLength >= 1 else { throw bad("maxStringLength", "must be at least 1, got \(maxStringLength)") }
        guard maxBracketLength >= 2 else { throw bad("maxBracketLength", "must be at least 2, got \(maxBracketLength)") }
        guard (1...26).contains(maxPairs) else { throw bad("maxPairs", "must be in 1...26, got \(maxPairs)") }
        // Text, task ids and int32 tokens twice (corpus and dataset): 10 bytes per byte.
        try MemoryBudget.check(MemoryBudget.product(targetBytes, 10),
                               for: "the synthetic corpus of \(targetBytes) bytes (10 bytes of memory per byte: text, task ids, tokens)",
                               field: "targetBytes")
    }
}

/// A seeded multi-task text corpus generated in code, so training runs with no data
/// file and expert load can be broken down by task.
///
/// `bytes` is ASCII text of whole lines; `taskIDs[i]` is the `SyntheticTask.id` of
/// the line that byte `i` belongs to (its newline included). With `ByteTokenizer`
/// token position = byte position, so `taskIDs` labels every token of the stream.
public struct SyntheticCorpus: Sendable {
    public let config: SyntheticCorpusConfig
    /// The corpus text, ASCII.
    public let bytes: [UInt8]
    /// Task id of each byte position, same count as `bytes`.
    public let taskIDs: [UInt8]

    /// Generates the corpus. Cost is linear in `targetBytes` (a few ms per MB in release).
    public init(config: SyntheticCorpusConfig = SyntheticCorpusConfig()) throws {
        try config.validate()
        self.config = config
        var gen = LineWriter(config: config)
        gen.bytes.reserveCapacity(config.targetBytes + 64)
        gen.ids.reserveCapacity(config.targetBytes + 64)
        while gen.bytes.count < config.targetBytes { gen.line() }
        bytes = gen.bytes
        taskIDs = gen.ids
    }

    /// Token ids for `ByteTokenizer` (one per byte).
    public var tokens: [Int32] { bytes.map { Int32($0) } }

    /// The corpus as a string.
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The task of byte (token) position `position`.
    public func task(at position: Int) -> SyntheticTask {
        precondition(position >= 0 && position < taskIDs.count, "position \(position) outside the corpus (0..<\(taskIDs.count))")
        return SyntheticTask(id: taskIDs[position])!
    }

    /// Task ids of a batch's input positions, row-major `[B·T]`: `taskIDs[starts[b] + t]`.
    /// The batch must come from a `TextDataset` built on this corpus's `tokens`.
    public func taskIDs(of batch: LMBatch) -> [UInt8] {
        let t = batch.sequenceLength
        var out: [UInt8] = []
        out.reserveCapacity(batch.batchSize * t)
        for s in batch.starts {
            precondition(s >= 0 && s + t <= taskIDs.count, "window at \(s) lies outside the corpus (\(taskIDs.count) bytes)")
            out.append(contentsOf: taskIDs[s..<s + t])
        }
        return out
    }

    /// Number of bytes of each task, indexed by `SyntheticTask.id`.
    public var bytesPerTask: [Int] {
        var counts = [Int](repeating: 0, count: SyntheticTask.allCases.count)
        for id in taskIDs { counts[Int(id)] += 1 }
        return counts
    }
}

/// Appends corpus lines to a byte buffer, with their task ids.
private struct LineWriter {
    let config: SyntheticCorpusConfig
    var rng: RandomGenerator
    var bytes: [UInt8] = []
    var ids: [UInt8] = []
    private var lineStart = 0

    init(config: SyntheticCorpusConfig) {
        self.config = config
        self.rng = RandomGenerator(seed: config.seed)
    }

    mutating func line() {
        let task = config.tasks[rng.int(below: config.tasks.count)]
        lineStart = bytes.count
        put(task.marker)
        switch task {
        case .arithmetic: arithmetic()
        case .copy: let s = letters(1 + rng.int(below: config.maxStringLength)); put(s); put("|"); put(s)
        case .reverse: let s = letters(1 + rng.int(below: config.maxStringLength)); put(s); put("|"); put(s.reversed())
        case .brackets: brackets()
        case .lookup: lookup()
        }
        put("\n")
        ids.append(contentsOf: repeatElement(task.id, count: bytes.count - lineStart))
    }

    private mutating func put(_ s: String) { bytes.append(contentsOf: s.utf8) }
    private mutating func put<S: Sequence>(_ s: S) where S.Element == UInt8 { bytes.append(contentsOf: s) }
    private mutating func put(_ n: Int) {
        if n < 0 { bytes.append(UInt8(ascii: "-")); put(-n); return }
        if n >= 10 { put(n / 10) }
        bytes.append(UInt8(ascii: "0") + UInt8(n % 10))
    }

    private mutating func letters(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in UInt8(ascii: "a") + UInt8(rng.int(below: 26)) }
    }

    private mutating func arithmetic() {
        switch rng.int(below: 3) {
        case 0:
            let a = rng.int(below: config.maxOperand + 1), b = rng.int(below: config.maxOperand + 1)
            put(a); put("+"); put(b); put("="); put(a + b)
        case 1:
            var a = rng.int(below: config.maxOperand + 1), b = rng.int(below: config.maxOperand + 1)
            if a < b { swap(&a, &b) }
            put(a); put("-"); put(b); put("="); put(a - b)
        default:
            let a = rng.int(below: 13), b = rng.int(below: 13)
            put(a); put("*"); put(b); put("="); put(a * b)
        }
    }

    /// Half the lines are random balanced sequences, half are balanced ones with one
    /// bracket replaced; the answer is always computed by `isBalanced`.
    private mutating func brackets() {
        let open: [UInt8] = Array("([{".utf8), close: [UInt8] = Array(")]}".utf8)
        let pairs = 1 + rng.int(below: config.maxBracketLength / 2)
        var seq: [UInt8] = []
        var stack: [Int] = []
        var opened = 0
        while seq.count < 2 * pairs {
            let canOpen = opened < pairs
            if canOpen && (stack.isEmpty || rng.int(below: 2) == 0) {
                let k = rng.int(below: 3); seq.append(open[k]); stack.append(k); opened += 1
            } else {
                seq.append(close[stack.removeLast()])
            }
        }
        if rng.int(below: 2) == 0 {
            let all = open + close
            seq[rng.int(below: seq.count)] = all[rng.int(below: all.count)]
        }
        put(seq); put("|"); put(Self.isBalanced(seq) ? "yes" : "no")
    }

    static func isBalanced(_ seq: [UInt8]) -> Bool {
        var stack: [UInt8] = []
        for c in seq {
            switch c {
            case UInt8(ascii: "("), UInt8(ascii: "["), UInt8(ascii: "{"): stack.append(c)
            default:
                guard let top = stack.popLast() else { return false }
                let want: UInt8 = c == UInt8(ascii: ")") ? UInt8(ascii: "(") : c == UInt8(ascii: "]") ? UInt8(ascii: "[") : UInt8(ascii: "{")
                if top != want { return false }
            }
        }
        return stack.isEmpty
    }

    /// `kv: a1=xy;b7=q?b7>q`: distinct keys (letter + digit), values of 1–3 letters.
    private mutating func lookup() {
        let n = 1 + rng.int(below: config.maxPairs)
        var keys: [[UInt8]] = []
        var values: [[UInt8]] = []
        while keys.count < n {
            let k = [UInt8(ascii: "a") + UInt8(rng.int(below: 26)), UInt8(ascii: "0") + UInt8(rng.int(below: 10))]
            if keys.contains(k) { continue }
            keys.append(k)
            values.append(letters(1 + rng.int(below: 3)))
        }
        for i in 0..<n {
            if i > 0 { put(";") }
            put(keys[i]); put("="); put(values[i])
        }
        let q = rng.int(below: n)
        put("?"); put(keys[q]); put(">"); put(values[q])
    }
}

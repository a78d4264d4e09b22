/// Finds the first stop string in text that arrives in pieces and says which text is safe
/// to send: text that might be the start of a stop string is held back until the next piece
/// settles it.
///
/// Matching is on UTF-8 bytes of whole characters (as `UTF8StreamDecoder` emits them); since
/// UTF-8 is self-synchronising, a stop string matches only at character boundaries. The
/// stop string itself and everything after it are never sent (OpenAI's `stop`).
public struct StopStringMatcher: Sendable {
    private let stops: [[UInt8]]
    private var pending: [UInt8] = []
    /// Whether a stop string was found (the completion ends there).
    public private(set) var stopped = false

    /// `stops`: the strings that end a completion (non-empty; none = pass everything through).
    public init(stops: [String]) {
        self.stops = stops.map { Array($0.utf8) }.filter { !$0.isEmpty }
    }

    /// The text that can be sent now, given the next piece. After a stop string is found
    /// (`stopped`), returns the text before it and then only "".
    public mutating func append(_ text: String) -> String {
        guard !stopped else { return "" }
        pending += Array(text.utf8)
        if let at = firstMatch() {
            stopped = true
            let out = String(decoding: pending[..<at], as: UTF8.self)
            pending.removeAll()
            return out
        }
        let keep = heldBack()
        let out = String(decoding: pending[..<(pending.count - keep)], as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return out
    }

    /// What is still held back (the completion ended without a stop string).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return stopped ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// The earliest start of any stop string in `pending`.
    private func firstMatch() -> Int? {
        var best: Int?
        for s in stops where s.count <= pending.count {
            for i in 0...(pending.count - s.count) where best.map({ i < $0 }) ?? true {
                if pending[i..<(i + s.count)].elementsEqual(s) { best = i; break }
            }
        }
        return best
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop string.
    private func heldBack() -> Int {
        var longest = 0
        for s in stops {
            for n in stride(from: min(s.count - 1, pending.count), to: longest, by: -1)
            where pending[(pending.count - n)...].elementsEqual(s[..<n]) {
                longest = n
                break
            }
        }
        return longest
    }
}

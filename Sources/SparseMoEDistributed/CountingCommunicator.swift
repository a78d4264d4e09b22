import Foundation

/// Calls, payload bytes and waiting time of one rank's collectives, by kind.
///
/// Bytes are the payload the library hands to the transport, per rank, by the algorithm the
/// library asks for — not what the transport's own algorithm moves inside (Open MPI may
/// forward a chunk through intermediate ranks; that is not seen here):
///
/// - all-reduce of n floats over N ranks, as reduce-scatter then all-gather with rank r owning
///   the chunk c_r = ⌊n(r+1)/N⌋ − ⌊nr/N⌋ (what `MPICommunicator` does): rank r sends
///   n − c_r floats and then its chunk to N − 1 ranks, and receives as much:
///   sent = received = 4·(n − c_r + (N−1)·c_r) bytes; the mean over the ranks is
///   4·2(N−1)/N·n, the ring all-reduce's volume.
/// - broadcast of n floats: the root sends 4·n·(N−1), every other rank receives 4·n.
/// - all-to-all of rows of L floats: 4·L·(rows sent to other ranks) sent, 4·L·(rows
///   received from other ranks) received; rows a rank keeps, and the row counts exchanged
///   first, are not counted.
/// - barrier: a call, no bytes.
///
/// `seconds` is wall time inside the call: the transfer and the wait for the slowest peer.
public struct CommunicationTally: Sendable, Equatable, Codable {
    public struct Entry: Sendable, Equatable, Codable {
        public var calls = 0
        public var bytesSent = 0
        public var bytesReceived = 0
        public var seconds = 0.0
        public init(calls: Int = 0, bytesSent: Int = 0, bytesReceived: Int = 0, seconds: Double = 0) {
            self.calls = calls
            self.bytesSent = bytesSent
            self.bytesReceived = bytesReceived
            self.seconds = seconds
        }

        enum CodingKeys: String, CodingKey { case calls, seconds, bytesSent = "bytes_sent", bytesReceived = "bytes_received" }
    }

    public var entries: [CommunicationKind: Entry] = [:]

    public init(entries: [CommunicationKind: Entry] = [:]) { self.entries = entries }

    public subscript(kind: CommunicationKind) -> Entry { entries[kind] ?? Entry() }

    /// Kinds in name order.
    public var kinds: [CommunicationKind] { entries.keys.sorted() }

    public var totalBytesSent: Int { entries.values.reduce(0) { $0 + $1.bytesSent } }
    public var totalBytesReceived: Int { entries.values.reduce(0) { $0 + $1.bytesReceived } }
    public var totalSeconds: Double { entries.values.reduce(0) { $0 + $1.seconds } }
    public var isEmpty: Bool { entries.isEmpty }

    mutating func add(_ kind: CommunicationKind, sent: Int, received: Int, seconds: Double) {
        var e = entries[kind] ?? Entry()
        e.calls += 1
        e.bytesSent += sent
        e.bytesReceived += received
        e.seconds += seconds
        entries[kind] = e
    }

    /// Kind by kind: `a` − `b` (what happened between two readings; kinds with no calls dropped).
    public static func - (a: Self, b: Self) -> Self {
        var out = Self()
        for (k, e) in a.entries {
            let o = b[k]
            let d = Entry(calls: e.calls - o.calls, bytesSent: e.bytesSent - o.bytesSent,
                          bytesReceived: e.bytesReceived - o.bytesReceived, seconds: e.seconds - o.seconds)
            if d.calls != 0 { out.entries[k] = d }
        }
        return out
    }

    /// Kind by kind: `a` + `b`.
    public static func + (a: Self, b: Self) -> Self {
        var out = a
        for (k, e) in b.entries {
            let o = a[k]
            out.entries[k] = Entry(calls: e.calls + o.calls, bytesSent: e.bytesSent + o.bytesSent,
                                   bytesReceived: e.bytesReceived + o.bytesReceived, seconds: e.seconds + o.seconds)
        }
        return out
    }

    /// Payload bytes rank `rank` of `size` sends (and receives) in an all-reduce of `count`
    /// floats (see the type's note).
    public static func allReduceBytes(count n: Int, rank r: Int, size: Int) -> Int {
        guard size > 1 else { return 0 }
        let chunk = n * (r + 1) / size - n * r / size
        return 4 * (n - chunk + (size - 1) * chunk)
    }

    // Kinds as JSON object keys.
    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode([String: Entry].self)
        entries = Dictionary(uniqueKeysWithValues: raw.map { (CommunicationKind($0.key), $0.value) })
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Dictionary(uniqueKeysWithValues: entries.map { ($0.key.name, $0.value) }))
    }
}

/// A `Communicator` that forwards every call to `base` and counts it (`CommunicationTally`)
/// under the kind the caller tagged it with (`Communicator.accounted(as:_:)`) or the
/// operation's default kind. One rank's object: used by that rank's thread alone.
public final class CountingCommunicator: Communicator, @unchecked Sendable {
    public let base: any Communicator
    public var rank: Int { base.rank }
    public var size: Int { base.size }
    public var timeout: Double { base.timeout }
    /// Everything counted since this object was made (sub-communicators from `split` included).
    public var tally: CommunicationTally { parent?.tally ?? ownTally }
    private var ownTally = CommunicationTally()
    /// The kind calls are counted under while `accounted(as:_:)` runs.
    private var ownCurrent: CommunicationKind?
    /// The communicator this one was split from: its tally and tags are shared.
    private let parent: CountingCommunicator?

    public init(_ base: any Communicator) {
        self.base = base
        self.parent = nil
    }

    private init(_ base: any Communicator, parent: CountingCommunicator) {
        self.base = base
        self.parent = parent
    }

    private var current: CommunicationKind? {
        get { parent?.current ?? ownCurrent }
        set { if let parent { parent.current = newValue } else { ownCurrent = newValue } }
    }

    private func add(_ kind: CommunicationKind, sent: Int, received: Int, seconds: Double) {
        if let parent { parent.add(kind, sent: sent, received: received, seconds: seconds) }
        else { ownTally.add(kind, sent: sent, received: received, seconds: seconds) }
    }

    /// A sub-communicator that counts into this one's tally, under this one's tags.
    public func split(color: Int, key: Int) throws -> any Communicator {
        CountingCommunicator(try base.split(color: color, key: key), parent: self)
    }

    /// `communicator` itself when it already counts, else a counting wrapper around it.
    public static func wrapping(_ communicator: any Communicator) -> CountingCommunicator {
        (communicator as? CountingCommunicator) ?? CountingCommunicator(communicator)
    }

    /// Runs `body` with its collectives counted as `kind` (an inner tag wins).
    public func counting<T>(as kind: CommunicationKind, _ body: () throws -> T) rethrows -> T {
        let saved = current
        current = kind
        defer { current = saved }
        return try body()
    }

    private func timed<T>(_ fallback: CommunicationKind, sent: Int, received: Int, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            add(current ?? fallback, sent: sent, received: received, seconds: seconds)
        }
        return try body()
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        let bytes = CommunicationTally.allReduceBytes(count: buffer.count, rank: rank, size: size)
        try timed(.allReduce, sent: bytes, received: bytes) { try base.allReduceSum(buffer) }
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        let n = 4 * buffer.count
        let isRoot = rank == root
        try timed(.broadcast, sent: isRoot ? n * (size - 1) : 0, received: isRoot || size == 1 ? 0 : n) {
            try base.broadcast(buffer, root: root)
        }
    }

    public func allToAllv(_ send: [Float], sendCounts: [Int], rowLength: Int) throws -> (rows: [Float], counts: [Int]) {
        let start = DispatchTime.now().uptimeNanoseconds
        let kind = current ?? .allToAll
        do {
            let out = try base.allToAllv(send, sendCounts: sendCounts, rowLength: rowLength)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            let sent = sendCounts.enumerated().reduce(0) { $0 + ($1.offset == rank ? 0 : $1.element) }
            let received = out.counts.enumerated().reduce(0) { $0 + ($1.offset == rank ? 0 : $1.element) }
            add(kind, sent: 4 * rowLength * sent, received: 4 * rowLength * received, seconds: seconds)
            return out
        } catch {
            add(kind, sent: 0, received: 0, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            throw error
        }
    }

    public func barrier() throws {
        try timed(.barrier, sent: 0, received: 0) { try base.barrier() }
    }
}

extension Communicator {
    /// Runs `body`, whose collectives on this communicator are counted as `kind` when it is a
    /// `CountingCommunicator` (otherwise just runs it).
    public func accounted<T>(as kind: CommunicationKind, _ body: () throws -> T) rethrows -> T {
        if let c = self as? CountingCommunicator { return try c.counting(as: kind, body) }
        return try body()
    }
}

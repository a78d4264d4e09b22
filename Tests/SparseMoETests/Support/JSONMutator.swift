import Foundation
@testable import SparseMoECore
@testable import SparseMoEModels

/// Seeded mutations of a JSON document, for the fuzz tests: structural edits (a field
/// deleted, a value swapped for another type, huge, negative, fractional or zero numbers)
/// and byte edits of the text (flips, truncation, insertion). Same seed, same inputs.
struct JSONMutator {
    var rng: RandomGenerator

    init(seed: UInt64) { rng = RandomGenerator(seed: seed) }

    /// One mutant of `seed`: 1–3 structural edits, then (one time in three) byte edits.
    mutating func mutate(_ seed: JSONValue) -> Data {
        var value = seed
        for _ in 0..<(1 + rng.int(below: 3)) { value = edit(value, depth: 0) }
        var bytes = [UInt8]((try? JSONEncoder().encode(value)) ?? Data("{}".utf8))
        if rng.int(below: 3) == 0 {
            for _ in 0..<(1 + rng.int(below: 3)) {
                guard !bytes.isEmpty else { break }
                let i = rng.int(below: bytes.count)
                switch rng.int(below: 3) {
                case 0: bytes[i] ^= UInt8(1 << rng.int(below: 8))
                case 1: bytes.removeSubrange(i...)
                default: bytes.insert([UInt8(ascii: "\""), UInt8(ascii: "{"), UInt8(ascii: ","), UInt8(ascii: "9"), 0xFF][rng.int(below: 5)], at: i)
                }
            }
        }
        return Data(bytes)
    }

    /// Replaces one randomly chosen node (or deletes it from its parent).
    mutating func edit(_ v: JSONValue, depth: Int) -> JSONValue {
        switch v {
        case var .object(o) where !o.isEmpty && rng.int(below: 4) != 0:
            let keys = o.keys.sorted()
            let k = keys[rng.int(below: keys.count)]
            if rng.int(below: 5) == 0 { o[k] = nil } else { o[k] = edit(o[k]!, depth: depth + 1) }
            return .object(o)
        case var .array(a) where !a.isEmpty && rng.int(below: 4) != 0:
            let i = rng.int(below: a.count)
            if rng.int(below: 5) == 0 { a.remove(at: i) } else { a[i] = edit(a[i], depth: depth + 1) }
            return .array(a)
        default:
            return replacement(for: v)
        }
    }

    mutating func replacement(for v: JSONValue) -> JSONValue {
        let huge: [JSONValue] = [.int(Int.max), .int(Int.min), .int(1_000_000_000_000), .int(1 << 31), .double(1e300), .double(-1e300),
                                 .double(1e19), .int(100_000), .int(1 << 40)]
        let negative: [JSONValue] = [.int(-1), .int(-2), .int(-(1 << 31)), .double(-0.5)]
        let other: [JSONValue] = [.null, .bool(true), .bool(false), .string(""), .string("x"), .string("silu"), .array([]),
                                  .object([:]), .int(0), .double(64.5), .double(0), .int(1), .int(2), .int(3)]
        switch rng.int(below: 4) {
        case 0: return huge[rng.int(below: huge.count)]
        case 1: return negative[rng.int(below: negative.count)]
        case 2:
            if case let .int(i) = v { return .int(rng.int(below: 2) == 0 ? i &* 1000 : i &+ (rng.int(below: 5) - 2)) }
            return other[rng.int(below: other.count)]
        default: return other[rng.int(below: other.count)]
        }
    }
}

/// Outcomes of a fuzz loop, for its report line.
struct FuzzCounts: CustomStringConvertible {
    var accepted = 0
    var rejected = 0
    var total: Int { accepted + rejected }
    var description: String { "\(total) inputs: \(accepted) accepted, \(rejected) rejected with an error" }
}

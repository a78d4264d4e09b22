import Foundation

/// `JSONDecoder().decode` with one repair to its errors. For a valid document whose number
/// does not fit its field (`64.5` or `2^70` where an integer is expected) Foundation reports
/// "The given data was not valid JSON" and no field. Then this finds the field — each
/// number that is not a whole Int64 is replaced by 1 in turn, and the one whose replacement
/// makes that error go away is it — and throws a `typeMismatch` at its path, which
/// `describeDecodingError` prints with the field's name.
package func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let error as DecodingError {
        guard case let .dataCorrupted(context) = error, context.codingPath.isEmpty,
              let root = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        else { throw error }
        for (path, number) in JSONNumbers.notWholeInt64(in: root) {
            let patched = JSONNumbers.replacing(path, in: root, with: NSNumber(value: 1))
            guard let retry = try? JSONSerialization.data(withJSONObject: patched, options: [.fragmentsAllowed]) else { continue }
            do {
                _ = try JSONDecoder().decode(T.self, from: retry)
            } catch let e as DecodingError {
                if case let .dataCorrupted(c) = e, c.codingPath.isEmpty { continue }
            }
            throw DecodingError.typeMismatch(Int.self, DecodingError.Context(
                codingPath: path.map(JSONPathKey.init),
                debugDescription: "\(number) is not a whole number that fits an integer field"))
        }
        throw error
    }
}

/// One step of a path into a JSON document: an object key or an array index.
package enum JSONPathStep: Equatable, Sendable {
    case key(String)
    case index(Int)
}

struct JSONPathKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ step: JSONPathStep) {
        switch step {
        case let .key(k): stringValue = k; intValue = nil
        case let .index(i): stringValue = "\(i)"; intValue = i
        }
    }
    init?(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init?(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

/// Numbers of a `JSONSerialization` tree.
enum JSONNumbers {
    /// Every number (not a Bool) that is fractional or outside Int64, with its path, in document order
    /// of keys sorted by name.
    static func notWholeInt64(in node: Any, at path: [JSONPathStep] = []) -> [([JSONPathStep], String)] {
        switch node {
        case let object as [String: Any]:
            return object.keys.sorted().flatMap { notWholeInt64(in: object[$0]!, at: path + [.key($0)]) }
        case let array as [Any]:
            return array.enumerated().flatMap { notWholeInt64(in: $0.element, at: path + [.index($0.offset)]) }
        case let number as NSNumber where !(node is Bool):
            let d = number.doubleValue
            let whole = d.rounded() == d && abs(d) < 9.2e18
            return whole ? [] : [(path, "\(number)")]
        default:
            return []
        }
    }

    /// `node` with the value at `path` replaced by `value`.
    static func replacing(_ path: [JSONPathStep], in node: Any, with value: Any) -> Any {
        guard let step = path.first else { return value }
        let rest = Array(path.dropFirst())
        switch (step, node) {
        case let (.key(k), object as [String: Any]):
            var copy = object
            if let child = object[k] { copy[k] = replacing(rest, in: child, with: value) }
            return copy
        case let (.index(i), array as [Any]) where array.indices.contains(i):
            var copy = array
            copy[i] = replacing(rest, in: array[i], with: value)
            return copy
        default:
            return node
        }
    }
}

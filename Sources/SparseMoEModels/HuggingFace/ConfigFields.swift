import Foundation
import SparseMoECore

/// Reads config.json fields by their `CodingKeys`, turning every failure into
/// `SparseMoEError.invalidConfig` naming the field (its JSON spelling) and the expected type.
struct ConfigFields<Key: CodingKey> {
    let c: KeyedDecodingContainer<Key>

    init(_ decoder: Decoder, _ keys: Key.Type = Key.self) throws {
        c = try decoder.container(keyedBy: Key.self)
    }

    func has(_ key: Key) -> Bool { c.contains(key) }

    /// The value, or nil when the key is absent or null.
    func optional<T: Decodable>(_ key: Key, _ type: T.Type = T.self) throws -> T? {
        do {
            return try c.decodeIfPresent(T.self, forKey: key)
        } catch {
            throw SparseMoEError.invalidConfig(field: key.stringValue,
                                               message: "expected \(Self.typeName(T.self)): \(describeDecodingError(error))")
        }
    }

    func required<T: Decodable>(_ key: Key, _ type: T.Type = T.self) throws -> T {
        guard let v: T = try optional(key) else {
            throw SparseMoEError.invalidConfig(field: key.stringValue, message: "missing required field (expected \(Self.typeName(T.self)))")
        }
        return v
    }

    /// The first present spelling of a field written several ways; two present spellings must agree.
    func oneOf<T: Decodable & Equatable>(_ keys: [Key], _ type: T.Type = T.self) throws -> (key: Key, value: T)? {
        var found: (key: Key, value: T)?
        for k in keys {
            guard let v: T = try optional(k) else { continue }
            if let (k0, v0) = found, v0 != v {
                throw SparseMoEError.invalidConfig(field: k.stringValue, message: "\(v) disagrees with '\(k0.stringValue)' = \(v0)")
            }
            if found == nil { found = (k, v) }
        }
        return found
    }

    func positive(_ key: Key, _ value: Int) throws -> Int {
        guard value > 0 else { throw SparseMoEError.invalidConfig(field: key.stringValue, message: "must be positive, found \(value)") }
        return value
    }

    func nonNegative(_ key: Key, _ value: Int) throws -> Int {
        guard value >= 0 else { throw SparseMoEError.invalidConfig(field: key.stringValue, message: "must be ≥ 0, found \(value)") }
        return value
    }

    static func typeName<T>(_ t: T.Type) -> String {
        switch t {
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        case is [Int].Type: return "a list of integers"
        default: return "\(t)"
        }
    }
}

/// Writes config.json fields by their `CodingKeys` (JSON spelling), keeping integers and
/// floats apart so that the file is written with the types transformers 5 validates.
struct ConfigWriter<Key: CodingKey> {
    var json: [String: JSONValue] = [:]

    mutating func put(_ key: Key, _ value: JSONValue) { json[key.stringValue] = value }
    mutating func put(_ key: Key, _ value: Int?) { put(key, value.map(JSONValue.int) ?? .null) }
    mutating func put(_ key: Key, _ value: Double?) { put(key, value.map(JSONValue.double) ?? .null) }
    mutating func put(_ key: Key, _ value: Bool) { put(key, .bool(value)) }
    mutating func put(_ key: Key, _ value: String?) { put(key, value.map(JSONValue.string) ?? .null) }
    mutating func put(_ key: Key, _ value: [Int]) { put(key, .array(value.map(JSONValue.int))) }
}

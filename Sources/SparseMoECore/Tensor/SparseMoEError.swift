/// Errors raised for bad input at the public API: wrong shapes, invalid
/// arguments or configuration fields, unreadable files. Each message says what
/// was wrong and what was expected.
public enum SparseMoEError: Error, CustomStringConvertible, Equatable {
    /// Operand shapes do not fit the op. `op` names the op.
    case shapeMismatch(op: String, message: String)
    /// An argument value is outside its valid range.
    case invalidArgument(op: String, message: String)
    /// A configuration field is invalid; `field` is its name as the user spelled it.
    case invalidConfig(field: String, message: String)
    /// A file could not be read or is malformed.
    case file(path: String, message: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, m): return "\(op): shape mismatch: \(m)"
        case let .invalidArgument(op, m): return "\(op): invalid argument: \(m)"
        case let .invalidConfig(field, m): return "invalid configuration field '\(field)': \(m)"
        case let .file(path, m): return "\(path): \(m)"
        }
    }
}

/// Throws `SparseMoEError.invalidConfig(field:message:)` unless `ok`: the one check behind
/// every configuration's `validate()`.
package func requireConfig(_ ok: Bool, _ field: String, _ message: @autoclosure () -> String) throws {
    if !ok { throw SparseMoEError.invalidConfig(field: field, message: message()) }
}

extension SparseMoEError: LocalizedError {
    public var errorDescription: String? { description }
}

import Foundation

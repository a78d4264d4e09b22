/// Input checks shared by the ops.
///
/// A wrong shape, dtype or argument passed to an op is a programmer error, like an
/// array index out of range: the op traps (`Check.trapping`) with the message these
/// checks produce, which names the op, the operand and the shapes; no bad input
/// reaches a C kernel. The checks themselves throw `SparseMoEError`, so that tests can
/// feed them bad inputs and read the message, and so that code taking user data (token
/// ids read from a file or a flag) can run the same check and throw instead of trapping.
package enum Check {
    package static func float32(_ t: Tensor, _ op: String, _ operand: String) throws {
        guard t.dtype == .float32 else {
            throw SparseMoEError.invalidArgument(op: op, message: "\(operand) must be float32, got \(t.dtype)")
        }
    }

    package static func int32(_ t: Tensor, _ op: String, _ operand: String) throws {
        guard t.dtype == .int32 else {
            throw SparseMoEError.invalidArgument(op: op, message: "\(operand) must be int32 indices, got \(t.dtype)")
        }
    }

    package static func rank(_ t: Tensor, atLeast r: Int, _ op: String, _ operand: String) throws {
        guard t.rank >= r else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(operand) must have rank ≥ \(r), got shape \(t.shape)")
        }
    }

    package static func rank(_ t: Tensor, _ r: Int, _ op: String, _ operand: String) throws {
        guard t.rank == r else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(operand) must have rank \(r), got shape \(t.shape)")
        }
    }

    package static func sameShape(_ a: Tensor, _ b: Tensor, _ op: String,
                                  _ names: (String, String) = ("a", "b")) throws {
        guard a.shape == b.shape else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(names.0) \(a.shape) and \(names.1) \(b.shape) must have the same shape")
        }
    }

    /// `count` elements fill `shape` (`Tensor.init` from values): every dimension ≥ 0
    /// and their product equals `count`. `what` names the elements ("values", "indices").
    package static func fills(_ count: Int, _ shape: [Int], _ what: String) throws {
        if let axis = shape.firstIndex(where: { $0 < 0 }) {
            throw SparseMoEError.shapeMismatch(op: "Tensor.init", message: "shape \(shape) has a negative dimension at axis \(axis)")
        }
        let n = MemoryBudget.product(shape)
        guard count == n else {
            throw SparseMoEError.shapeMismatch(op: "Tensor.init", message: "\(count) \(what) do not fill shape \(shape) (\(n) elements)")
        }
    }

    package static func argument(_ ok: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
        guard ok else { throw SparseMoEError.invalidArgument(op: op, message: message()) }
    }

    /// Runs `checks` and returns their result; a failed check is a programmer error and
    /// traps with the error's message ("add: shape mismatch: …"), in every build
    /// configuration (`precondition` drops its message under `-O`).
    @inline(__always)
    package static func trapping<T>(file: StaticString = #file, line: UInt = #line,
                                    _ checks: () throws -> T) -> T {
        do { return try checks() } catch { fatalError("\(error)", file: file, line: line) }
    }

    /// Traps with `message` (prefixed by `op`) unless `ok`: `precondition` that keeps its
    /// message in optimised builds.
    @inline(__always)
    package static func require(_ ok: Bool, _ op: String, _ message: @autoclosure () -> String,
                                file: StaticString = #file, line: UInt = #line) {
        if !ok { fatalError("\(op): \(message())", file: file, line: line) }
    }
}

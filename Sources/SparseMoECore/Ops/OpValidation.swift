/// Input checks shared by the ops. Each throws `SparseMoEError` naming the op,
/// the operand and the shapes, so that no bad input reaches a C kernel.
package enum Check {
    static func float32(_ t: Tensor, _ op: String, _ operand: String) throws {
        guard t.dtype == .float32 else {
            throw SparseMoEError.invalidArgument(op: op, message: "\(operand) must be float32, got \(t.dtype)")
        }
    }

    static func int32(_ t: Tensor, _ op: String, _ operand: String) throws {
        guard t.dtype == .int32 else {
            throw SparseMoEError.invalidArgument(op: op, message: "\(operand) must be int32 indices, got \(t.dtype)")
        }
    }

    static func rank(_ t: Tensor, atLeast r: Int, _ op: String, _ operand: String) throws {
        guard t.rank >= r else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(operand) must have rank ≥ \(r), got shape \(t.shape)")
        }
    }

    static func rank(_ t: Tensor, _ r: Int, _ op: String, _ operand: String) throws {
        guard t.rank == r else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(operand) must have rank \(r), got shape \(t.shape)")
        }
    }

    static func sameShape(_ a: Tensor, _ b: Tensor, _ op: String, _ names: (String, String) = ("a", "b")) throws {
        guard a.shape == b.shape else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(names.0) \(a.shape) and \(names.1) \(b.shape) must have the same shape")
        }
    }

    package static func argument(_ ok: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
        guard ok else { throw SparseMoEError.invalidArgument(op: op, message: message()) }
    }
}

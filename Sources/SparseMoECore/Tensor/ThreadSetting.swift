import Foundation

/// A requested thread count, from a flag or the `SPARSEMOE_NUM_THREADS` environment
/// variable, checked by one rule: a value that is not a whole number ≥ 1 is an error;
/// more threads than the machine has is allowed, with a warning (each extra thread
/// shares a core, and OpenMP's spinning barriers make that many times slower).
public struct ThreadSetting: Sendable, Equatable {
    /// The thread count to use; nil when neither source gave one (keep the default).
    public var count: Int?
    /// Set when `count` exceeds the hardware threads.
    public var warning: String?

    /// Environment variable read when no flag is given.
    public static let environmentVariable = "SPARSEMOE_NUM_THREADS"

    /// The flag's value wins over the environment's. `available` is the number of
    /// hardware threads (`Threads.available`).
    public init(flag: Int?, environment: [String: String], available: Int) throws {
        if let n = flag {
            guard n >= 1 else {
                throw SparseMoEError.invalidArgument(op: "--threads", message: "must be a whole number ≥ 1, got \(n)")
            }
            count = n
        } else if let raw = environment[Self.environmentVariable] {
            let text = raw.trimmingCharacters(in: .whitespaces)
            guard let n = Int(text), n >= 1 else {
                throw SparseMoEError.invalidArgument(
                    op: Self.environmentVariable, message: "must be a whole number ≥ 1, got '\(raw)'")
            }
            count = n
        } else {
            count = nil
        }
        if let n = count, n > available {
            warning = "\(n) threads on \(available) hardware threads: the extra threads share cores and "
                + "every parallel region waits for them; expect it to run much slower than with \(available)"
        }
    }
}

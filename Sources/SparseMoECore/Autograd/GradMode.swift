/// Whether ops record themselves for backward. Scoped, not global: the setting
/// belongs to the current task (or thread, outside Swift concurrency).
public enum GradMode {
    @TaskLocal static var enabled: Bool = true

    /// True while ops record gradient history.
    public static var isEnabled: Bool { enabled }

    /// Set while a checkpointed forward runs without recording (`checkpoint`): its backward
    /// recomputes it with recording on, and both must round alike, so float32 ops keep
    /// their training kernels instead of the inference ones.
    @TaskLocal static var recomputable: Bool = false

    /// True when nothing is recorded and nothing will be recomputed: float32 ops may take
    /// inference kernels that round differently from their training ones (`linearProjection`,
    /// `routedExperts` with few rows per expert).
    package static var inferenceKernels: Bool { !enabled && !recomputable }

    /// Runs `body` with recording off: inference, evaluation, optimizer updates.
    /// Tensors produced inside have no gradient history.
    public static func noGrad<R>(_ body: () throws -> R) rethrows -> R {
        try $enabled.withValue(false, operation: body)
    }
}

/// Runs `body` with gradient recording off. Same as `GradMode.noGrad`.
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.noGrad(body)
}

/// Whether ops record themselves for backward. Scoped, not global: the setting
/// belongs to the current task (or thread, outside Swift concurrency).
public enum GradMode {
    @TaskLocal static var enabled: Bool = true

    /// True while ops record gradient history.
    public static var isEnabled: Bool { enabled }

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

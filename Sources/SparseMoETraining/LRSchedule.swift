import Foundation
import SparseMoECore

/// Learning rate as a pure function of the optimiser step: linear warmup, then decay
/// from the peak to `minFraction · peak`.
///
/// For step s = 0, 1, 2, … (the number of optimiser steps already taken), W warmup
/// steps and S total steps:
/// - s < W: lr = peak · (s + 1) / W (the first step uses peak/W, step W−1 the peak);
/// - W ≤ s: progress q = min(1, (s − W) / (S − W)), and
///   cosine: lr = min + (peak − min) · ½ (1 + cos(π q)); linear: lr = peak − (peak − min) · q;
///   constant: lr = peak.
/// So lr = peak at s = W, halfway between peak and min at s = W + (S − W)/2 (cosine
/// and linear), and min at s ≥ S. With S ≤ W the decay is skipped (lr = peak after warmup).
public struct LRSchedule: Codable, Sendable, Equatable {
    public enum Decay: String, Codable, Sendable, CaseIterable {
        case cosine, linear, constant
    }

    /// Peak learning rate.
    public var peak: Double
    /// W: steps of linear warmup (0 = none).
    public var warmupSteps: Int
    /// S: total optimiser steps; the rate reaches its minimum at step S.
    public var totalSteps: Int
    /// Final rate as a fraction of the peak.
    public var minFraction: Double
    public var decay: Decay

    public init(peak: Double, warmupSteps: Int, totalSteps: Int, minFraction: Double = 0.1, decay: Decay = .cosine) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minFraction = minFraction
        self.decay = decay
    }

    /// Throws `invalidConfig` naming the first bad field.
    public func validate() throws {
        guard peak.isFinite && peak >= 0 else {
            throw SparseMoEError.invalidConfig(field: "learning_rate", message: "must be a finite number ≥ 0, got \(peak)")
        }
        guard warmupSteps >= 0 else {
            throw SparseMoEError.invalidConfig(field: "warmup_steps", message: "must be ≥ 0, got \(warmupSteps)")
        }
        guard totalSteps >= 1 else {
            throw SparseMoEError.invalidConfig(field: "steps", message: "must be ≥ 1, got \(totalSteps)")
        }
        guard minFraction >= 0 && minFraction <= 1 else {
            throw SparseMoEError.invalidConfig(field: "min_lr_fraction", message: "must be in [0, 1], got \(minFraction)")
        }
    }

    /// The learning rate of step `step` (0-based). Negative steps are treated as 0.
    public func lr(step: Int) -> Double {
        let s = max(0, step)
        if s < warmupSteps { return peak * Double(s + 1) / Double(warmupSteps) }
        let span = totalSteps - warmupSteps
        guard span > 0 else { return peak }
        let q = min(1.0, Double(s - warmupSteps) / Double(span))
        let low = peak * minFraction
        switch decay {
        case .cosine: return low + (peak - low) * 0.5 * (1 + cos(Double.pi * q))
        case .linear: return peak - (peak - low) * q
        case .constant: return peak
        }
    }
}

/// What a training forward keeps for backward (activation checkpointing). Gradients are
/// the same bit for bit in every mode; the modes trade memory for recomputation.
public enum ActivationCheckpointing: String, Codable, Sendable, CaseIterable {
    /// Keep every activation the ops save (fastest, most memory).
    case none
    /// Recompute each block's attention sublayer, norm₁(x) → attention → output
    /// projection, in backward; keep the feed-forward half. Drops the [B, H, T, T]
    /// attention probabilities and the q, k, v projections.
    case attention
    /// Keep only each block's input [B, T, C]; recompute the whole block in backward,
    /// one block at a time (≈ one extra forward per step).
    case block
}

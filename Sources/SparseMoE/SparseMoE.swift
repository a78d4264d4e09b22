/// SparseMoE: sparse mixture-of-experts transformers on the CPU.
///
/// Layers (each a folder): Tensor → Autograd → Ops (the only code that calls the
/// C kernels) → Layers / MoE → Models → Training; Analysis and IO beside them.
public enum SparseMoE {
    /// Library version, printed by `moe --version`.
    public static let version = "0.1.0"
}

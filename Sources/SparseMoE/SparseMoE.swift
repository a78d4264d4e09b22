/// SparseMoE: sparse mixture-of-experts transformers on the CPU.
///
/// `import SparseMoE` brings the seven library layers, each its own module so that the
/// compiler keeps data flowing one way (docs/architecture.md):
/// SparseMoETraining, SparseMoEAnalysis, SparseMoEServing → SparseMoEModels → SparseMoENN → SparseMoECore;
/// SparseMoETraining → SparseMoEDistributed (the `Communicator` of data-parallel training).
@_exported import SparseMoECore
@_exported import SparseMoENN
@_exported import SparseMoEModels
@_exported import SparseMoEAnalysis
@_exported import SparseMoEDistributed
@_exported import SparseMoETraining
@_exported import SparseMoEServing

public enum SparseMoE {
    /// Library version, printed by `moe --version`.
    public static let version = "0.1.0"
}

import SparseMoECore

/// Weights read from a file must be finite: one NaN or infinity in a weight makes every
/// logit NaN, far from its cause. Checked when a model is loaded (library and Hugging Face
/// folders), so the error names the tensor and the file.
package func requireFiniteWeights(_ t: Tensor, name: String, path: String) throws {
    guard t.dtype == .float32 else { return }
    let bad: (index: Int, value: Float)? = t.withUnsafeFloats { p in
        for i in p.indices where !p[i].isFinite { return (i, p[i]) }
        return nil
    }
    if let bad {
        throw SparseMoEError.file(path: path, message: "tensor '\(name)' holds a non-finite value (\(bad.value) at element \(bad.index) of shape \(t.shape)); the model would compute NaN logits — re-export the checkpoint from a finite model")
    }
}

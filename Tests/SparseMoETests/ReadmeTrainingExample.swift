import SparseMoE

// The README's second Swift example ("Train a TransformerLM in Swift"). The lines between
// the two markers are the README's second ```swift block, after its `import SparseMoE` line,
// indented by four spaces; ReadmeExampleTests fails when the two differ.

/// Runs the README training-loop example; returns the loss of every step.
func readmeTrainingExample() throws -> [Float] {
    // README training example begins
    var config = try TransformerConfig.preset(named: "tiny-moe")                // 4 layers: dense, then 8 experts, top-2
    config.maxSequenceLength = 64
    let model = try TransformerLM(config: config, seed: 0)
    let optimizer = try AdamW(namedParameters: model.namedParameters(), config: AdamWConfig(weightDecay: 0.1))

    let tokens = ByteTokenizer().encode("the quick brown fox jumps over the lazy dog")  // one token per byte
    let inputs = Tensor(indices: Array(tokens.dropLast()), shape: [1, tokens.count - 1])   // [B, T]
    let targets = Tensor(indices: Array(tokens.dropFirst()), shape: [1, tokens.count - 1]) // next tokens
    var losses: [Float] = []
    for _ in 0..<30 {
        let out = try model.forward(inputs, options: ForwardOptions(training: true))
        let loss = crossEntropy(out.logits, targets: targets) + out.auxLoss!       // + router losses
        loss.backward()
        _ = optimizer.clipGradients(maxNorm: 1)
        optimizer.step(lr: 3e-3)
        optimizer.zeroGrad()
        losses.append(loss.item)
    }
    print("loss \(losses.first!) → \(losses.last!)")
    // README training example ends
    return losses
}

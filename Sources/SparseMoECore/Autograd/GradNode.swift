/// One recorded op on the tape: its inputs and the closure that turns the
/// gradient of its output into gradients of its inputs.
///
/// `backward(outputGrad)` must ACCUMULATE into `input.gradBuffer()` for each input
/// with `requiresGrad` — never overwrite — so that a tensor used twice receives
/// the sum of both contributions.
final class GradNode {
    let op: String
    let inputs: [Tensor]
    let backward: (Tensor) -> Void

    init(op: String, inputs: [Tensor], backward: @escaping (Tensor) -> Void) {
        self.op = op
        self.inputs = inputs
        self.backward = backward
    }
}

import SparseMoECore

/// The weighted combine of expert outputs on the tokens' own rank:
///
///     y[t] = Σ_{s : rowOfSlot[t·K+s] ≥ 0} gates[t,s] · rows[rowOfSlot[t·K+s]]   (slots in order)
///
/// rows `[A, C]` (one per kept assignment), gates `[T, K]` → y `[T, C]`; -1 marks a dropped or
/// empty slot (no contribution, zero gate gradient). Backward: drows[a] += gates[t,s]·dy[t],
/// dgates[t,s] += dy[t]·rows[a].
func combineSlotRows(_ rows: Tensor, gates: Tensor, rowOfSlot: [Int]) -> Tensor {
    let (t, k) = (gates.shape[0], gates.shape[1])
    let c = rows.shape[1]
    precondition(rowOfSlot.count == t * k, "combineSlotRows: \(rowOfSlot.count) slots for gates \(gates.shape)")
    let y = Tensor(zeros: [t, c])
    let yp = y.floats, rp = rows.floats, gp = gates.floats
    for i in 0..<t {
        let out = yp + i * c
        for s in 0..<k {
            let a = rowOfSlot[i * k + s]
            guard a >= 0 else { continue }
            let w = gp[i * k + s], src = rp + a * c
            for j in 0..<c { out[j] += w * src[j] }
        }
    }
    return y.recording("combineSlotRows", inputs: [rows, gates]) { dy in
        let dyp = dy.floats
        let drows = rows.requiresGrad ? rows.gradBuffer().floats : nil
        let dgates = gates.requiresGrad ? gates.gradBuffer().floats : nil
        for i in 0..<t {
            let g = dyp + i * c
            for s in 0..<k {
                let a = rowOfSlot[i * k + s]
                guard a >= 0 else { continue }
                if let drows {
                    let w = gp[i * k + s], d = drows + a * c
                    for j in 0..<c { d[j] += w * g[j] }
                }
                if let dgates {
                    let src = rp + a * c
                    var dot = 0.0
                    for j in 0..<c { dot += Double(g[j]) * Double(src[j]) }
                    dgates[i * k + s] += Float(dot)
                }
            }
        }
    }
}

internal import CMoEKernels

/// Concatenation along the last axis: parts `[..., D_i]` with equal leading dimensions
/// → `[..., Σ D_i]`. Backward hands each part its slice of the gradient.
public func concatLastAxis(_ parts: [Tensor]) -> Tensor {
    let op = "concatLastAxis"
    let lead = Check.trapping {
        guard let first = parts.first else { throw SparseMoEError.invalidArgument(op: op, message: "needs at least one tensor") }
        let lead = Array(first.shape.dropLast())
        for (i, p) in parts.enumerated() {
            try Check.float32(p, op, "part \(i)")
            guard p.rank >= 1, Array(p.shape.dropLast()) == lead else {
                throw SparseMoEError.shapeMismatch(op: op, message: "part \(i) \(p.shape) must share leading dimensions \(lead) with part 0 \(first.shape)")
            }
        }
        return lead
    }
    let rows = lead.reduce(1, *)
    let widths = parts.map { $0.shape.last! }
    let total = widths.reduce(0, +)
    let out = Tensor(zeros: lead + [total])
    var offset = 0
    for (p, w) in zip(parts, widths) {
        moe_copy_block(out.floats, p.floats, Int64(rows), Int64(w), Int64(total), Int64(offset), Int64(w), 0, 0)
        offset += w
    }
    return out.recording(op, inputs: parts) { g in
        var off = 0
        for (p, w) in zip(parts, widths) {
            if p.requiresGrad {
                moe_copy_block(p.gradBuffer().floats, g.floats, Int64(rows), Int64(w), Int64(w), 0, Int64(total), Int64(off), 1)
            }
            off += w
        }
    }
}

/// Splits `x [..., D]` along the last axis into parts of the given widths (Σ = D).
public func splitLastAxis(_ x: Tensor, _ widths: [Int]) -> [Tensor] {
    let op = "splitLastAxis"
    let d = Check.trapping {
        try Check.float32(x, op, "x")
        try Check.rank(x, atLeast: 1, op, "x")
        let d = x.shape.last!
        guard widths.allSatisfy({ $0 >= 0 }), widths.reduce(0, +) == d else {
            throw SparseMoEError.shapeMismatch(op: op, message: "widths \(widths) must be ≥ 0 and sum to the last dimension \(d) of \(x.shape)")
        }
        return d
    }
    let lead = Array(x.shape.dropLast())
    let rows = lead.reduce(1, *)
    var offset = 0
    var parts: [Tensor] = []
    for w in widths {
        let part = Tensor(zeros: lead + [w])
        let off = offset
        moe_copy_block(part.floats, x.floats, Int64(rows), Int64(w), Int64(w), 0, Int64(d), Int64(off), 0)
        parts.append(part.recording(op, inputs: [x]) { g in
            moe_copy_block(x.gradBuffer().floats, g.floats, Int64(rows), Int64(w), Int64(d), Int64(off), Int64(w), 0, 1)
        })
        offset += w
    }
    return parts
}

/// Repeats `x [B, T, 1, D]` over `heads` → `[B, T, heads, D]` (DeepSeek's shared rotary key).
/// Backward sums the heads' gradients.
public func broadcastHeads(_ x: Tensor, heads: Int) -> Tensor {
    let op = "broadcastHeads"
    Check.trapping {
        try Check.float32(x, op, "x")
        guard x.rank == 4, x.shape[2] == 1, heads >= 1 else {
            throw SparseMoEError.shapeMismatch(op: op, message: "x must be [B, T, 1, D] and heads ≥ 1, got \(x.shape), heads \(heads)")
        }
    }
    let (rows, d) = (x.shape[0] * x.shape[1], x.shape[3])
    let out = Tensor(zeros: [x.shape[0], x.shape[1], heads, d])
    for h in 0..<heads {
        moe_copy_block(out.floats, x.floats, Int64(rows), Int64(d), Int64(heads * d), Int64(h * d), Int64(d), 0, 0)
    }
    return out.recording(op, inputs: [x]) { g in
        let dx = x.gradBuffer().floats
        for h in 0..<heads {
            moe_copy_block(dx, g.floats, Int64(rows), Int64(d), Int64(d), 0, Int64(heads * d), Int64(h * d), 1)
        }
    }
}

/// Concatenation along the first axis: parts `[N_i, ...]` with equal trailing dimensions
/// → `[Σ N_i, ...]` (rows one after another). Backward hands each part its rows of the gradient.
public func concatFirstAxis(_ parts: [Tensor]) -> Tensor {
    let op = "concatFirstAxis"
    let trail = Check.trapping {
        guard let first = parts.first else { throw SparseMoEError.invalidArgument(op: op, message: "needs at least one tensor") }
        let trail = Array(first.shape.dropFirst())
        for (i, p) in parts.enumerated() {
            try Check.float32(p, op, "part \(i)")
            guard p.rank >= 1, Array(p.shape.dropFirst()) == trail else {
                throw SparseMoEError.shapeMismatch(op: op, message: "part \(i) \(p.shape) must share trailing dimensions \(trail) with part 0 \(first.shape)")
            }
        }
        return trail
    }
    let out = Tensor(zeros: [parts.reduce(0) { $0 + $1.shape[0] }] + trail)
    var offset = 0
    for p in parts {
        (out.floats + offset).update(from: p.floats, count: p.count)
        offset += p.count
    }
    return out.recording(op, inputs: parts) { g in
        var off = 0
        for p in parts {
            if p.requiresGrad {
                let d = p.gradBuffer().floats, gp = g.floats + off
                for i in 0..<p.count { d[i] += gp[i] }
            }
            off += p.count
        }
    }
}

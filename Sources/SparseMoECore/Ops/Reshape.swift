extension Tensor {
    /// A view with a new shape and the same elements (no copy). One dimension may
    /// be -1 and is inferred. Gradients flow back through the view.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let dims = Check.trapping { try Check.reshape(shape, to: newShape) }
        let out = Tensor(storage: storage, shape: dims, offset: offset)
        let src = self
        // `g` is the view's own gradient, dropped once propagated: the first one is taken over.
        return out.recording("reshape", inputs: [self]) { g in src.accumulateGrad(handingOver: g) }
    }

    /// Rows `range` of the leading axis, as a view (no copy). Gradients flow back.
    public func slice(rows range: Range<Int>) -> Tensor {
        Check.trapping { try Check.slice(shape, rows: range) }
        let inner = shape.dropFirst().reduce(1, *)
        let out = Tensor(storage: storage, shape: [range.count] + shape.dropFirst(), offset: offset + range.lowerBound * inner)
        let src = self
        return out.recording("slice", inputs: [self]) { g in
            let dst = src.gradBuffer().floats + range.lowerBound * inner
            let gp = g.floats
            for i in 0..<(range.count * inner) { dst[i] += gp[i] }
        }
    }
}

extension Check {
    /// The shape `reshaped(newShape)` gives a tensor of `shape`: at most one -1 (inferred),
    /// the same element count.
    package static func reshape(_ shape: [Int], to newShape: [Int]) throws -> [Int] {
        var dims = newShape
        let n = shape.reduce(1, *)
        let unknown = dims.indices.filter { dims[$0] == -1 }
        guard unknown.count <= 1, dims.allSatisfy({ $0 >= -1 }) else {
            throw SparseMoEError.invalidArgument(op: "reshape", message: "invalid target shape \(newShape): at most one -1, no other negatives")
        }
        if let u = unknown.first {
            let known = dims.enumerated().filter { $0.offset != u }.map(\.element).reduce(1, *)
            guard known > 0, n % known == 0 else {
                throw SparseMoEError.shapeMismatch(op: "reshape", message: "cannot reshape \(shape) (\(n) elements) to \(newShape)")
            }
            dims[u] = n / known
        }
        guard dims.reduce(1, *) == n else {
            throw SparseMoEError.shapeMismatch(op: "reshape", message: "cannot reshape \(shape) (\(n) elements) to \(newShape)")
        }
        return dims
    }

    /// `range` within the leading axis of `shape`.
    package static func slice(_ shape: [Int], rows range: Range<Int>) throws {
        guard !shape.isEmpty, range.lowerBound >= 0, range.upperBound <= shape[0] else {
            throw SparseMoEError.invalidArgument(op: "slice", message: "rows \(range) out of bounds for shape \(shape)")
        }
    }
}

import SparseMoECore
import SparseMoEDistributed

/// Data parallelism: N replicas of the model, one per rank, each training on its slice of
/// every global batch, kept identical by averaging their gradients.
///
/// Every rank draws the same global batch of B sequences (the same data generator) and takes
/// rows [r·B/N, (r+1)·B/N); its loss is the mean over its B/N sequences, so the mean over the
/// ranks of the losses and of the gradients equals the loss and gradient of the global batch.
/// Gradients are averaged by all-reduce (sum in rank order, then · 1/N) over a few flat
/// buckets of at most `bucketFloats` floats, and every rank then takes the same optimiser
/// step. Parameters with no gradient on any rank keep a nil gradient (AdamW skips them, as
/// single-process training would); a parameter with a gradient on some rank only gets zeros
/// elsewhere before the sum.
final class DataParallel {
    /// The communicator, counting what each step sends (`CommunicationTally`).
    let communicator: CountingCommunicator
    /// Floats per gradient bucket (16 MiB).
    static let bucketFloats = 1 << 22
    /// Parameters in buckets; a parameter larger than a bucket gets a bucket of its own.
    let buckets: [[Tensor]]
    let parameters: [Tensor]

    init(communicator: any Communicator, parameters: [Tensor]) {
        self.communicator = CountingCommunicator.wrapping(communicator)
        self.parameters = parameters
        var buckets: [[Tensor]] = [], current: [Tensor] = [], floats = 0
        for p in parameters {
            if !current.isEmpty && floats + p.count > Self.bucketFloats {
                buckets.append(current)
                current = []; floats = 0
            }
            current.append(p); floats += p.count
        }
        if !current.isEmpty { buckets.append(current) }
        self.buckets = buckets
    }

    var rank: Int { communicator.rank }
    var size: Int { communicator.size }

    /// The rows of a global batch of `batchSize` sequences this rank trains on.
    func rows(of batchSize: Int) -> Range<Int> {
        let per = batchSize / size
        return (rank * per)..<((rank + 1) * per)
    }

    /// Replaces every gradient by its mean over the ranks.
    func averageGradients() throws {
        // Which parameters have a gradient anywhere: one flag each, summed.
        var has = parameters.map { $0.grad == nil ? Float(0) : 1 }
        try communicator.counting(as: .statistics) { try communicator.allReduceSum(&has) }
        let inverse = 1 / Float(size)
        var index = 0
        for bucket in buckets {
            var flat = [Float](repeating: 0, count: bucket.reduce(0) { $0 + $1.count })
            var offset = 0
            for p in bucket {
                if let g = p.grad { flat.withUnsafeMutableBufferPointer { $0.baseAddress!.advanced(by: offset).update(from: g.floats, count: p.count) } }
                offset += p.count
            }
            try communicator.counting(as: .gradients) { try communicator.allReduceSum(&flat) }
            offset = 0
            for p in bucket {
                if has[index] > 0 {
                    let g = p.gradBuffer().floats
                    for i in 0..<p.count { g[i] = flat[offset + i] * inverse }
                } else {
                    p.zeroGrad()
                }
                offset += p.count
                index += 1
            }
        }
    }

    /// The mean over the ranks of each value (losses for the step report).
    func mean(_ values: [Double]) throws -> [Double] {
        var v = values.map(Float.init)
        try communicator.counting(as: .statistics) { try communicator.allReduceSum(&v) }
        return v.map { Double($0) / Double(size) }
    }

    /// The replica mean handed to the forward pass (`ForwardOptions.replicaMean`).
    var replicaMean: (UnsafeMutableBufferPointer<Float>) throws -> Void {
        { [communicator] buffer in
            try communicator.counting(as: .statistics) { try communicator.allReduceSum(buffer) }
            let inverse = 1 / Float(communicator.size)
            for i in buffer.indices { buffer[i] *= inverse }
        }
    }

    /// The replica sum (pending router loads).
    var replicaSum: (UnsafeMutableBufferPointer<Float>) throws -> Void {
        { [communicator] buffer in try communicator.counting(as: .statistics) { try communicator.allReduceSum(buffer) } }
    }

    /// Copies rank 0's values of `tensors` to every rank.
    func broadcast(_ tensors: [Tensor]) throws {
        for t in tensors where t.count > 0 {
            try communicator.broadcast(UnsafeMutableBufferPointer(start: t.floats, count: t.count), root: 0)
        }
    }

    /// Whether this replica's `tensors` equal rank 0's, bit for bit: a 64-bit FNV-1a
    /// fingerprint of their bits compared with rank 0's (three 22-bit pieces travel exactly
    /// as floats). Every rank must call it.
    func replicasIdentical(_ tensors: [Tensor]) throws -> Bool {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in tensors {
            for i in 0..<t.count { h = (h ^ UInt64(t.floats[i].bitPattern)) &* 0x100_0000_01b3 }
        }
        let mine = [Float(h & 0x3f_ffff), Float((h >> 22) & 0x3f_ffff), Float(h >> 44)]
        var root = mine
        try communicator.counting(as: .replicaCheck) { try communicator.broadcast(&root, root: 0) }
        return root == mine
    }
}

extension CommunicationKind {
    /// Debug builds' check after every step that all replicas hold rank 0's parameters.
    static let replicaCheck = CommunicationKind("broadcast replica check (debug builds)")
}

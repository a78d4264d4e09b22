import SparseMoECore

/// Load statistics of one MoE layer for one forward pass, computed from the routing decision
/// the layer returns (`MoEOutput.routing`), outside the forward. Cheap (O(T·K + T·E)).
public struct RoutingStatistics: Codable, Sendable, Equatable {
    /// Assignments each expert computed (after dropping).
    public var tokensPerExpert: [Int]
    /// tokensPerExpert / total assignments.
    public var fraction: [Double]
    /// Coefficient of variation of the load: std / mean over experts (0 = balanced).
    public var coefficientOfVariation: Double
    /// Largest load / mean load (1 = balanced).
    public var maxOverMean: Double
    /// Mean over tokens of the entropy (nats) of the router distribution; nil when the
    /// router has no probabilities (hash) or its scores are not a distribution (sigmoid).
    public var routerEntropy: Double?
    /// Assignments removed by the capacity limit, and their share of all selected.
    public var dropped: Int
    public var dropRate: Double
    /// Experts that received no token.
    public var idleExperts: Int

    /// The statistics of `routing` as decided by `router` (E and whether its probabilities
    /// are a distribution come from the router).
    public init(routing: Routing, router: any Router) {
        self.init(routing: routing, numExperts: router.numExperts, probsAreDistribution: router.probabilitiesAreDistribution)
    }

    public init(routing: Routing, numExperts e: Int, probsAreDistribution: Bool = true) {
        var load = [Int](repeating: 0, count: e)
        let idx = routing.experts.int32s
        for i in 0..<routing.experts.count where idx[i] >= 0 { load[Int(idx[i])] += 1 }
        let total = load.reduce(0, +)
        tokensPerExpert = load
        fraction = load.map { total > 0 ? Double($0) / Double(total) : 0 }
        let mean = Double(total) / Double(e)
        let variance = load.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(e)
        coefficientOfVariation = mean > 0 ? variance.squareRoot() / mean : 0
        maxOverMean = mean > 0 ? Double(load.max() ?? 0) / mean : 0
        idleExperts = load.filter { $0 == 0 }.count
        dropped = routing.dropped
        dropRate = total + dropped > 0 ? Double(dropped) / Double(total + dropped) : 0
        if let p = routing.probs, probsAreDistribution, p.rank == 2, p.shape[0] > 0 {
            let (t, ecount) = (p.shape[0], p.shape[1])
            var h = 0.0
            let pp = p.floats
            for i in 0..<(t * ecount) where pp[i] > 0 { h -= Double(pp[i]) * log(Double(pp[i])) }
            routerEntropy = h / Double(t)
        } else {
            routerEntropy = nil
        }
    }
}

import Foundation

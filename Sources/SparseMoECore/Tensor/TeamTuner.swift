internal import CMoEKernels
import Foundation

/// Picks, by measuring, the team size on which a repeated kind of work runs fastest.
///
/// Load-aware teams (`Threads.adaptive`) shrink a team only while other processes keep a core
/// about 90 % busy. A lighter neighbour that comes and goes (a server's own HTTP threads, a
/// client on the same machine) still takes a core now and then, and every parallel region
/// whose second thread lost its core waits at the barrier until the scheduler gives it back:
/// on two cores, `moe serve` with tiny-moe delivered about 1.3× more tokens per second on one
/// thread than on two, with one stream as with sixteen, while without HTTP two threads were
/// the faster.
///
/// `run(kind:work:_:)` runs each kind of work (say decode steps) on every team size
/// `maxTeam`…1 in turn, in blocks of `block` calls, until each size has `explore` timed calls
/// (the first call of a block is not timed: it pays for the switch); then keeps the size with
/// the lowest median seconds per unit of `work` for the next `exploit` calls of that kind, and
/// measures again. Work whose calls take `longCall` seconds or more on the full team (the median
/// of its first block) stays on the full team without trying smaller ones: a core lost for a
/// few milliseconds costs such calls little, and trying a smaller team would cost much. Before
/// work on a smaller team than the call before, the idle workers are put to sleep
/// (`Threads.park()`): spinning, they would take the core the smaller team left.
///
/// The choice only caps the team of each parallel region: `Threads.count`, and so how every
/// kernel splits its work, stays, and results are bit-identical whatever the tuner picks. Not
/// thread-safe: one caller (one engine thread) per tuner, and the cap applies to the whole
/// process while `body` runs.
public final class TeamTuner {
    /// Largest team tried (`Threads.count` when the tuner was made).
    public let maxTeam: Int
    /// Calls per team size in each measuring round.
    public let explore: Int
    /// Calls on the chosen size before measuring again.
    public let exploit: Int
    /// Consecutive calls on one size while measuring.
    public let block: Int
    /// Seconds per call from which the full team is kept unmeasured.
    public let longCall: Double
    let clock: () -> Double
    /// The team size the last call ran on (0 before the first).
    public private(set) var lastTeam = 0

    struct Kind {
        var secondsPerWork: [[Double]]
        var chosen: Int?
        var left = 0
        var turn = 0
        /// Seconds of the timed calls of the first block (the full team).
        var firstBlock: [Double] = []
    }
    var kinds: [Int: Kind] = [:]

    /// `clock`: seconds, monotonic (tests pass a fake one).
    public init(maxTeam: Int = Threads.count, explore: Int = 12, exploit: Int = 512, block: Int = 4,
                longCall: Double = 0.02,
                clock: @escaping () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }) {
        self.maxTeam = max(1, maxTeam)
        self.explore = max(1, explore)
        self.exploit = max(1, exploit)
        self.block = max(2, block)
        self.longCall = longCall
        self.clock = clock
    }

    /// The team size chosen for `kind`, nil while it is being measured.
    public func choice(kind: Int) -> Int? { kinds[kind]?.chosen }

    /// Runs `body` (`work` units of the kind, e.g. rows of a forward) on the team size the
    /// tuner tries or chose for `kind`, and times it.
    public func run<R>(kind: Int, work: Int, _ body: () throws -> R) rethrows -> R {
        guard maxTeam > 1, work > 0 else { return try body() }
        var k = kinds[kind] ?? Kind(secondsPerWork: Array(repeating: [], count: maxTeam))
        let team = k.chosen ?? (maxTeam - (k.turn / block) % maxTeam)
        let start = clock()
        let result = try onTeam(team, body)
        let seconds = clock() - start
        if k.chosen != nil {
            k.left -= 1
            if k.left <= 0 { k = Kind(secondsPerWork: Array(repeating: [], count: maxTeam)) }
        } else {
            if k.turn % block != 0 { k.secondsPerWork[team - 1].append(seconds / Double(work)) }
            if k.turn > 0 && k.turn < block { k.firstBlock.append(seconds) }
            k.turn += 1
            if k.turn == block && k.firstBlock.sorted()[k.firstBlock.count / 2] >= longCall {
                k.chosen = maxTeam
                k.left = exploit
            } else if k.secondsPerWork.allSatisfy({ $0.count >= explore }) {
                k.chosen = Self.fastest(k.secondsPerWork)
                k.left = exploit
            }
        }
        kinds[kind] = k
        return result
    }

    /// Runs `body` untimed on the full team (other work of the same caller, say prefill steps
    /// between decode steps), so that the next call on a smaller team parks the workers again.
    public func runOnFullTeam<R>(_ body: () throws -> R) rethrows -> R {
        try onTeam(maxTeam, body)
    }

    /// `body` with every team capped at `team` (a cap already set lower stays).
    private func onTeam<R>(_ team: Int, _ body: () throws -> R) rethrows -> R {
        if team < lastTeam { moe_threads_park() }
        lastTeam = team
        let cap = moe_threads_team_limit()
        if team < maxTeam && (cap == 0 || Int(cap) > team) { moe_threads_set_team_limit(Int32(team)) }
        defer { if moe_threads_team_limit() != cap { moe_threads_set_team_limit(cap) } }
        return try body()
    }

    /// 1 + the index of the lowest median; on a tie the larger team.
    static func fastest(_ samples: [[Double]]) -> Int {
        var best = samples.count, bestMedian = Double.infinity
        for (i, s) in samples.enumerated().reversed() {
            let m = s.sorted()[s.count / 2]
            if m < bestMedian { best = i + 1; bestMedian = m }
        }
        return best
    }
}

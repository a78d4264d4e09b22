#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the process did during one timed run: context switches and page faults from
/// `getrusage(RUSAGE_SELF)` (all threads of the process, before and after the run), and how
/// many of its other threads were already running when the run started (Linux
/// `/proc/self/task/*/stat`; 0 elsewhere) — a worker still spinning from whatever ran before
/// competes with the run for the cores.
public struct RunCounters: Codable, Sendable, Equatable {
    /// The process gave up a core (waited on a lock, futex, page-in, or `sched_yield`).
    public var voluntaryContextSwitches: Int
    /// The scheduler took a core away (another runnable thread, of this process or another).
    public var involuntaryContextSwitches: Int
    /// Page faults served without I/O: first touch of fresh memory, mostly.
    public var minorFaults: Int
    public var majorFaults: Int
    /// Other threads of this process in state R when the run started.
    public var busyThreadsAtStart: Int

    public init(voluntaryContextSwitches: Int = 0, involuntaryContextSwitches: Int = 0, minorFaults: Int = 0,
                majorFaults: Int = 0, busyThreadsAtStart: Int = 0) {
        self.voluntaryContextSwitches = voluntaryContextSwitches
        self.involuntaryContextSwitches = involuntaryContextSwitches
        self.minorFaults = minorFaults
        self.majorFaults = majorFaults
        self.busyThreadsAtStart = busyThreadsAtStart
    }

    enum CodingKeys: String, CodingKey {
        case voluntaryContextSwitches = "voluntary_ctxt", involuntaryContextSwitches = "involuntary_ctxt"
        case minorFaults = "minor_faults", majorFaults = "major_faults", busyThreadsAtStart = "busy_threads_at_start"
    }

    /// The process's cumulative counters now (busy threads not counted).
    public static func now() -> RunCounters {
        var u = rusage()
        #if os(Linux)
        _ = getrusage(RUSAGE_SELF.rawValue, &u)
        #else
        _ = getrusage(RUSAGE_SELF, &u)
        #endif
        return RunCounters(voluntaryContextSwitches: Int(u.ru_nvcsw), involuntaryContextSwitches: Int(u.ru_nivcsw),
                           minorFaults: Int(u.ru_minflt), majorFaults: Int(u.ru_majflt))
    }

    /// The counters between `start` and `end` (both from `now()`), with `busy` threads at the start.
    public static func delta(from start: RunCounters, to end: RunCounters, busy: Int) -> RunCounters {
        RunCounters(voluntaryContextSwitches: end.voluntaryContextSwitches - start.voluntaryContextSwitches,
                    involuntaryContextSwitches: end.involuntaryContextSwitches - start.involuntaryContextSwitches,
                    minorFaults: end.minorFaults - start.minorFaults, majorFaults: end.majorFaults - start.majorFaults,
                    busyThreadsAtStart: busy)
    }

    /// Threads of this process other than the caller that are running or runnable (state R)
    /// right now. Linux only (0 elsewhere or when /proc is unreadable).
    public static func busyOtherThreads() -> Int {
        #if os(Linux)
        guard let dir = opendir("/proc/self/task") else { return 0 }
        defer { closedir(dir) }
        var running = 0
        var buffer = [UInt8](repeating: 0, count: 512)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first?.isNumber == true else { continue }
            let fd = open("/proc/self/task/\(name)/stat", O_RDONLY)
            guard fd >= 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard n > 0 else { continue }
            // "tid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses).
            guard let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { continue }
            if buffer[close + 2] == UInt8(ascii: "R") { running += 1 }
        }
        return max(0, running - 1) // the caller is running
        #else
        return 0
        #endif
    }
}

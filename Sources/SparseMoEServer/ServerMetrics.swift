import CoreMetrics
import Foundation
import Prometheus
import SparseMoE
import Synchronization

/// The server's metrics, made through swift-metrics with an injected factory (so that tests
/// and several servers in one process never bootstrap the global `MetricsSystem`) and
/// exposed as Prometheus text at `GET /metrics`.
///
/// | name | kind | what |
/// |---|---|---|
/// | `moe_requests_total{status}` | counter | completion requests by HTTP status |
/// | `moe_prompt_tokens_total` | counter | prompt tokens of accepted requests |
/// | `moe_completion_tokens_total` | counter | tokens generated |
/// | `moe_batch_size` | histogram | sequences decoding per scheduler step |
/// | `moe_time_to_first_token_seconds` | histogram | request accepted → first token |
/// | `moe_inter_token_latency_seconds` | histogram | between consecutive tokens of a request |
/// | `moe_queue_length` | gauge | requests waiting for admission |
/// | `moe_requests_running` | gauge | sequences decoding |
/// | `moe_expert_tokens_total{expert}` | counter | tokens routed to each expert, summed over MoE layers |
/// | `moe_decode_threads` | gauge | threads per parallel region of the last decode step (`TeamTuner`'s choice) |
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let promptTokens: CoreMetrics.Counter
    private let completionTokens: CoreMetrics.Counter
    private let batchSize: Recorder
    private let timeToFirstToken: CoreMetrics.Timer
    private let interTokenLatency: CoreMetrics.Timer
    private let queueLength: Recorder
    private let running: Recorder
    private let decodeThreads: Recorder
    /// Counters made on first use: by status, by expert.
    private let byStatus = Mutex<[Int: CoreMetrics.Counter]>([:])
    private let byExpert = Mutex<[CoreMetrics.Counter]>([])

    /// Metrics in `registry` (a fresh one by default).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["moe_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        let latency: [Duration] = [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                   .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30)]
        factory.durationHistogramBuckets["moe_time_to_first_token_seconds"] = latency
        factory.durationHistogramBuckets["moe_inter_token_latency_seconds"] = latency
        self.factory = factory
        promptTokens = CoreMetrics.Counter(label: "moe_prompt_tokens_total", factory: factory)
        completionTokens = CoreMetrics.Counter(label: "moe_completion_tokens_total", factory: factory)
        batchSize = Recorder(label: "moe_batch_size", aggregate: true, factory: factory)
        timeToFirstToken = CoreMetrics.Timer(label: "moe_time_to_first_token_seconds", factory: factory)
        interTokenLatency = CoreMetrics.Timer(label: "moe_inter_token_latency_seconds", factory: factory)
        queueLength = Recorder(label: "moe_queue_length", aggregate: false, factory: factory)
        running = Recorder(label: "moe_requests_running", aggregate: false, factory: factory)
        decodeThreads = Recorder(label: "moe_decode_threads", aggregate: false, factory: factory)
        queueLength.record(0)
        running.record(0)
    }

    /// One completion request answered with `status`.
    public func request(status: Int) {
        let counter = byStatus.withLock { counters in
            if let c = counters[status] { return c }
            let c = CoreMetrics.Counter(label: "moe_requests_total", dimensions: [("status", String(status))], factory: factory)
            counters[status] = c
            return c
        }
        counter.increment()
    }

    public func prompt(tokens: Int) { promptTokens.increment(by: tokens) }
    public func completion(tokens: Int) { completionTokens.increment(by: tokens) }
    public func firstToken(after seconds: Double) { timeToFirstToken.recordSeconds(seconds) }
    public func interToken(seconds: Double) { interTokenLatency.recordSeconds(seconds) }

    /// The engine's load, as seen now.
    public func load(queueLength q: Int, running r: Int) {
        queueLength.record(q)
        running.record(r)
    }

    /// Everything a scheduler step reports: batch size, load, expert routing.
    /// Pass this as the engine's `onStep`.
    public func record(step: SchedulerStepReport) {
        if step.decodeSequences > 0 { batchSize.record(step.decodeSequences) }
        if step.prefillTokens == 0 && step.team > 0 { decodeThreads.record(step.team) }
        load(queueLength: step.queueLength, running: step.running)
        guard !step.expertLoad.isEmpty else { return }
        let counters = byExpert.withLock { counters in
            while counters.count < step.expertLoad.count {
                counters.append(CoreMetrics.Counter(label: "moe_expert_tokens_total", dimensions: [("expert", String(counters.count))], factory: factory))
            }
            return counters
        }
        for (e, n) in step.expertLoad.enumerated() where n > 0 { counters[e].increment(by: n) }
    }

    /// Prometheus text exposition of every metric.
    public func exposition() -> String { registry.emitToString() }
}

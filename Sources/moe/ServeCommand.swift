import ArgumentParser
import Foundation
import NIOCore
import SparseMoE
import SparseMoEServer

/// `moe serve`: an OpenAI-compatible HTTP server with continuous batching.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model folder over HTTP with an OpenAI-compatible completions API (continuous batching).",
        discussion: """
        Endpoints: POST /v1/completions (OpenAI's completions API: model, prompt as text or \
        token ids, max_tokens (default 16), temperature (default 1; 0 = greedy), top_p, top_k, \
        seed, stop (up to 4 strings), stream), GET /v1/models, GET /health, GET /metrics \
        (Prometheus text). Text goes through the folder's tokenizer as in `moe generate`; \
        generation stops at max_tokens, at config.json's eos_token_id, at a stop string, or \
        at max_position_embeddings.

        Requests that arrive while others are generating join the running batch at the next \
        step: up to --max-batch sequences decode together, --max-queue more wait (one more \
        is answered 429), and long prompts are prefilled --prefill-chunk tokens at a time. \
        Ctrl-C or SIGTERM stops accepting connections, finishes the requests in flight, then \
        exits. Port 0 picks a free port; the address is printed on stderr once listening.

        Examples:
          moe serve --model runs/tiny-moe/model --port 8080
          curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' \\
              -d '{"prompt": "math: 12+7=", "max_tokens": 8, "temperature": 0}'
          curl -sN localhost:8080/v1/completions -H 'Content-Type: application/json' \\
              -d '{"prompt": "rev: abc|", "max_tokens": 16, "stream": true, "stop": ["\\n"]}'
          curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' \\
              -d '{"prompt": [1, 2, 3], "max_tokens": 4, "seed": 7}'
          curl -s localhost:8080/metrics
          moe serve --model path/to/hf-folder --dtype int4 --max-batch 8 --model-name olmoe
        """)

    @Option(help: "Model folder (config.json + model.safetensors).")
    var model: String

    @OptionGroup var weights: DTypeOption

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 = any free port).")
    var port = 8080

    @Option(name: .customLong("max-batch"), help: "Most sequences decoding together.")
    var maxBatch = SchedulerOptions().maxBatch

    @Option(name: .customLong("max-queue"), help: "Most requests waiting for a place in the batch; more are answered 429.")
    var maxQueue = SchedulerOptions().maxQueue

    @Option(name: .customLong("max-tokens"), help: "Largest max_tokens a request may ask for (default: the model's context).")
    var maxTokens: Int?

    @Option(name: .customLong("max-prompt-tokens"), help: "Longest prompt in tokens (default: the model's context − 1).")
    var maxPromptTokens: Int?

    @Option(name: .customLong("prefill-chunk"), help: "Most prompt tokens prefilled per step (chunked prefill).")
    var prefillChunk = SchedulerOptions().prefillChunk

    @Option(name: .customLong("cache-positions"), help: ArgumentHelp(
        "KV-cache positions shared by all running requests (default: max-batch × the model's context).",
        discussion: "A request holds min(prompt + max_tokens, context) positions while it runs; requests that do not fit wait. Bounds the cache memory: positions × layers × 2 × kv_heads × head_dim × 4 bytes."))
    var cachePositions: Int?

    @Option(help: ArgumentHelp(
        "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).",
        discussion: "Decode steps measure whether fewer threads are faster while the HTTP threads and other processes share the cores, and use the faster team (moe_decode_threads in /metrics); the tokens do not change."))
    var threads: Int?

    @Option(name: .customLong("model-name"), help: "The model name clients send (default: the folder's name).")
    var modelName: String?

    func validate() throws {
        _ = try weights.choice()
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be ≥ 1, got \(maxBatch)") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be ≥ 0, got \(maxQueue)") }
        guard prefillChunk >= 1 else { throw ValidationError("--prefill-chunk must be ≥ 1, got \(prefillChunk)") }
        if let cachePositions, cachePositions < 1 { throw ValidationError("--cache-positions must be ≥ 1, got \(cachePositions)") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be ≥ 1, got \(maxTokens)") }
        if let maxPromptTokens, maxPromptTokens < 1 { throw ValidationError("--max-prompt-tokens must be ≥ 1, got \(maxPromptTokens)") }
        if let modelName, modelName.isEmpty { throw ValidationError("--model-name must not be empty") }
    }

    /// The tool's other commands are synchronous; this one waits for the server's task.
    func run() throws {
        final class Outcome: @unchecked Sendable { var error: Error? }  // written before the signal, read after
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let command = self
        Task {
            do { try await command.serve() } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    func serve() async throws {
        try applyThreads(threads)
        let folder = try LoadedModelFolder(model, weights: weights)
        let (dir, native, lm) = (folder.directory, folder.native, folder.model)
        let codec: TextCodec
        do {
            codec = try TextCodec(directory: dir, native: native, vocabSize: lm.config.vocabSize, rawConfig: folder.rawConfig)
        } catch let e as TextCodecError {
            throw ModelCommandError("--model: \(e)")
        }
        if let note = codec.note { printError("note: \(note)") }
        let context = lm.config.maxSequenceLength
        let name = modelName ?? dir.standardizedFileURL.lastPathComponent
        let options = ServerOptions(modelName: name, contextLength: context,
                                    maxTokens: maxTokens ?? context, maxPromptTokens: maxPromptTokens ?? max(context - 1, 1))
        let metrics = ServerMetrics()
        let engine = try GenerationEngine(model: lm, options: SchedulerOptions(maxBatch: maxBatch, maxQueue: maxQueue, prefillChunk: prefillChunk,
                                                                                    cachePositions: cachePositions),
                                          onStep: { metrics.record(step: $0) })
        let server = CompletionServer(backend: engine, codec: codec, options: options, metrics: metrics)
        let app = server.application(host: host, port: port) { host, port in
            printError("moe serve: listening on http://\(host):\(port) (model '\(name)'); Ctrl-C finishes the requests in flight and stops")
        }
        do { try await app.runService() } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ModelCommandError("--port \(port): \(host):\(port) is already in use; choose another port (--port 0 picks a free one)")
        }
    }
}

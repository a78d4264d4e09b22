import XCTest
@testable import SparseMoECore
@testable import SparseMoETraining
@testable import SparseMoERuns

/// The output folder of a run: nothing is overwritten or mixed without being asked for,
/// resuming continues or extends a run, and summary.json never meets a NaN.
extension TrainingRunTests {
    func checkpointNames(_ o: TrainingRunOptions) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: o.outputDirectory + "/checkpoints").filter { $0.hasPrefix("step-") }.sorted()
    }

    func testAFolderHoldingARunIsRefusedWithoutResumeOrForce() throws {
        let o = options { _ in }
        defer { try? FileManager.default.removeItem(atPath: o.outputDirectory) }
        // An empty existing folder is fine.
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        _ = try TrainingRun(options: o).run()
        XCTAssertThrowsError(try TrainingRun(options: o)) { error in
            for needle in [o.outputDirectory, "--resume", "--force"] {
                XCTAssertTrue("\(error)".contains(needle), "'\(error)' should mention '\(needle)'")
            }
        }
        XCTAssertThrowsError(try TrainingRun(options: o, resume: true, force: true))
    }

    func testForceRemovesTheOldRunAndStartsClean() throws {
        let first = options { $0.training.steps = 3; $0.training.checkpointEvery = 1 }
        defer { try? FileManager.default.removeItem(atPath: first.outputDirectory) }
        _ = try TrainingRun(options: first).run()
        XCTAssertEqual(try checkpointNames(first), ["step-000002", "step-000003"])
        var second = first
        second.training.steps = 2
        second.training.checkpointEvery = 0
        let summary = try TrainingRun(options: second, force: true).run()
        XCTAssertEqual(summary.steps, 2)
        XCTAssertEqual(try checkpointNames(second), ["step-000002"], "the old run's step-000003 is gone")
        let saved = try JSONDecoder().decode(TrainingRunOptions.self, from: Data(contentsOf: URL(fileURLWithPath: second.outputDirectory + "/run.json")))
        XCTAssertEqual(saved.training.steps, 2)
    }

    func testResumeContinuesAnInterruptedRunAndExtendsAFinishedOne() throws {
        let o = options { $0.training.steps = 4; $0.training.checkpointEvery = 2 }
        defer { try? FileManager.default.removeItem(atPath: o.outputDirectory) }
        _ = try TrainingRun(options: o).run()
        // As if the run had stopped after its step-2 checkpoint.
        try Data("step-000002".utf8).write(to: URL(fileURLWithPath: o.outputDirectory + "/checkpoints/latest"))
        let resumed = try TrainingRun(options: o, resume: true).run()
        XCTAssertEqual(resumed.steps, 4)
        XCTAssertEqual(resumed.history.map(\.step), [3, 4])
        // Finished: resuming says so, and how to go further.
        XCTAssertThrowsError(try TrainingRun(options: o, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("already reached its 4 steps"), "\(error)")
            XCTAssertTrue("\(error)".contains("--steps"), "\(error)")
        }
        XCTAssertThrowsError(try TrainingRun(options: o, resume: true, steps: 3)) { error in
            XCTAssertTrue("\(error)".contains("already at step 4"), "\(error)")
        }
        XCTAssertThrowsError(try TrainingRun(options: o, steps: 6), "a step override is only for resuming")
        let extended = try TrainingRun(options: o, resume: true, steps: 6).run()
        XCTAssertEqual(extended.steps, 6)
        XCTAssertEqual(extended.history.map(\.step), [5, 6])
        XCTAssertTrue(extended.trainLoss.isFinite)
        let saved = try JSONDecoder().decode(TrainingRunOptions.self, from: Data(contentsOf: URL(fileURLWithPath: o.outputDirectory + "/run.json")))
        XCTAssertEqual(saved.training.steps, 6, "run.json records the extended run")
    }

    /// What `moe train --resume` refuses to change silently: every setting that differs from
    /// the saved run is named by its run.json key with both values; equal options name nothing.
    func testDifferencesNameEveryChangedSettingByItsRunJSONKey() throws {
        var saved = TrainingRunOptions()
        saved.training.learningRate = 1e-3
        saved.outputDirectory = "runs/a"
        XCTAssertEqual(try saved.differences(from: saved), [])
        var given = saved
        given.training.learningRate = 2e-3
        given.training.checkpointing = .block
        given.dataPath = "notes.txt"
        given.training.steps = saved.training.steps + 100
        given.outputDirectory = "runs/b"
        XCTAssertEqual(try saved.differences(from: given, ignoring: ["training.steps", "outputDirectory"]),
                       ["dataPath: (none) → \"notes.txt\"", "training.checkpointing: \"none\" → \"block\"",
                        "training.learning_rate: 0.001 → 0.002"])
        XCTAssertEqual(try saved.differences(from: given).count, 5)
        given = saved
        given.model = .initFrom("runs/a/model")
        XCTAssertEqual(try saved.differences(from: given).count, 2, "config._0 gone, initFrom._0 new")
    }

    func testAnOutputThatIsARegularFileIsAClearError() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-out-\(UUID().uuidString).txt")
        try Data("x".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let o = options { $0.outputDirectory = file.path }
        for resume in [false, true] {
            XCTAssertThrowsError(try TrainingRun(options: o, resume: resume)) { error in
                XCTAssertTrue("\(error)".contains(file.path) && "\(error)".contains("is a file, not a folder"), "\(error)")
            }
        }
    }

    func testNonFiniteNumbersAreWrittenAsNull() throws {
        let point = LossPoint(step: 1, trainLoss: .nan, validationLoss: nil)
        let json = String(decoding: try JSONEncoder().encode(point), as: UTF8.self)
        XCTAssertTrue(json.contains("\"train_loss\":null"), json)
        let back = try JSONDecoder().decode(LossPoint.self, from: Data(json.utf8))
        XCTAssertTrue(back.trainLoss.isNaN)
        XCTAssertEqual(back, point)
    }

    func testResumeFallsBackFromADamagedCheckpointToTheNewestIntactOne() throws {
        let o = options { $0.training.steps = 4; $0.training.checkpointEvery = 2 }
        defer { try? FileManager.default.removeItem(atPath: o.outputDirectory) }
        _ = try TrainingRun(options: o).run()
        func truncate(_ path: String) throws {
            let url = URL(fileURLWithPath: o.outputDirectory + "/checkpoints/" + path)
            let data = try Data(contentsOf: url)
            try data.prefix(data.count / 2).write(to: url)
        }
        try truncate("step-000004/model.safetensors")
        let run = try TrainingRun(options: o, resume: true, steps: 6)
        XCTAssertEqual(run.resumedFrom?.lastPathComponent, "step-000002")
        XCTAssertEqual(run.skippedCheckpoints.count, 1)
        XCTAssertTrue(run.skippedCheckpoints[0].contains("step-000004") && run.skippedCheckpoints[0].contains("damaged"), "\(run.skippedCheckpoints)")
        XCTAssertEqual(run.trainer.step, 2)
        // With the older one damaged too, nothing is left to resume: a clear error.
        try truncate("step-000002/optimizer.safetensors")
        XCTAssertThrowsError(try TrainingRun(options: o, resume: true, steps: 6)) { error in
            XCTAssertTrue("\(error)".contains("no intact checkpoint"), "\(error)")
        }
    }
}

extension TrainingRunTests {
    /// summary.json reports the checkpointing mode, the measured peak RSS and the analytic
    /// activation bytes of the run's config (`TrainingMemoryEstimate`).
    func testSummaryReportsCheckpointingAndMemory() throws {
        let o = options { $0.training.checkpointing = .block }
        defer { try? FileManager.default.removeItem(atPath: o.outputDirectory) }
        let run = try TrainingRun(options: o)
        _ = try run.run()
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: o.outputDirectory + "/summary.json"))) as! [String: Any]
        XCTAssertEqual(json["checkpointing"] as? String, "block")
        let estimate = try TrainingMemoryEstimate(model: run.trainer.model.config, batchSize: 2, sequenceLength: 16, checkpointing: .block)
        XCTAssertEqual(json["activation_bytes"] as? Int, estimate.activationBytes)
        XCTAssertEqual(json["analytic_peak_bytes"] as? Int, estimate.totalBytes)
        XCTAssertGreaterThan(json["peak_rss_bytes"] as? Int ?? 0, estimate.totalBytes, "the process holds at least the analytic bytes")
        let saved = try JSONDecoder().decode(TrainingRunOptions.self, from: Data(contentsOf: URL(fileURLWithPath: o.outputDirectory + "/run.json")))
        XCTAssertEqual(saved.training.checkpointing, .block)
    }
}

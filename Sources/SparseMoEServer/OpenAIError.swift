import Foundation
import Hummingbird
import SparseMoE

/// An error answered in OpenAI's shape:
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}` with an HTTP status.
public struct OpenAIError: Error, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// "invalid_request_error" for bad input; "rate_limit_error", "server_error" otherwise.
    public var type: String
    /// The request field to fix, where one is at fault.
    public var param: String?
    public var code: String?

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    /// 400: `param` is wrong as given.
    public static func invalid(_ param: String?, _ message: String, code: String? = nil) -> OpenAIError {
        OpenAIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// The answer to a `ServingError` from the backend: 429 queue full, 400 invalid, 503 shutting down.
    public init(_ error: ServingError) {
        switch error {
        case .queueFull:
            self.init(status: .tooManyRequests, message: error.description, type: "rate_limit_error", code: "queue_full")
        case let .invalidRequest(field, message):
            self = .invalid(field, message)
        case .shuttingDown:
            self.init(status: .serviceUnavailable, message: error.description, type: "server_error", code: "shutting_down")
        }
    }

    public var description: String { "\(status.code) \(type)\(param.map { " (\($0))" } ?? ""): \(message)" }

    /// The JSON body.
    public var body: ErrorBody {
        ErrorBody(error: .init(message: message, type: type, param: param, code: code))
    }

    public struct ErrorBody: Codable, Equatable, Sendable {
        public struct Detail: Codable, Equatable, Sendable {
            public var message: String
            public var type: String
            public var param: String?
            public var code: String?

            // Absent param and code are written as null, as OpenAI does.
            public func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message)
                try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param)
                try c.encode(code, forKey: .code)
            }
        }
        public var error: Detail
    }
}

extension OpenAIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response.json(body, status: status)
    }
}

extension Response {
    /// A JSON response of `value` (keys sorted, so answers are stable).
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":{"message":"could not encode the answer","type":"server_error","param":null,"code":null}}"#.utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

//! The one error type of the emulator's API, rendered as Compute Engine renders errors:
//!
//! ```json
//! {"error":{"code":404,"message":"The resource 'projects/p/zones/z/instances/x' was not found",
//!           "status":"NOT_FOUND",
//!           "errors":[{"message":"…","domain":"global","reason":"notFound"}]}}
//! ```
//!
//! The official client takes its `Code` from the `status` string, so every variant carries one.
//! The same value also describes the failure of an operation that ends DONE with an error
//! ([`ApiError::operation_code`] gives the `error.errors[].code` GCE would put there).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API failure, synchronous (an HTTP error) or asynchronous (the `error` of a DONE operation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404 `NOT_FOUND` / `notFound`: `resource` is the relative path, e.g. `projects/p/zones/z/instances/x`.
    #[error("The resource '{resource}' was not found")]
    NotFound {
        /// Relative resource path.
        resource: String,
    },
    /// 409 `ALREADY_EXISTS` / `alreadyExists`.
    #[error("The resource '{resource}' already exists")]
    AlreadyExists {
        /// Relative resource path.
        resource: String,
    },
    /// 400 `INVALID_ARGUMENT` / `invalid`: a field value GCE would refuse (wrong region, bad name…).
    #[error("{0}")]
    Invalid(String),
    /// 400 `INVALID_ARGUMENT` / `badRequest`: a request that cannot be understood (bad JSON…).
    #[error("{0}")]
    BadRequest(String),
    /// 400 `INVALID_ARGUMENT` / `resourceInUseByAnotherResource`.
    #[error("{0}")]
    InUse(String),
    /// 412 `FAILED_PRECONDITION` / `conditionNotMet`: a stale or missing fingerprint.
    #[error("{0}")]
    ConditionNotMet(String),
    /// 413 `INVALID_ARGUMENT` / `fieldSizeTooLarge`: a field over GCE's size limit (a metadata
    /// value over 256 KiB). GCE sends no gRPC status for it; `INVALID_ARGUMENT` is the closest.
    #[error("{0}")]
    FieldSizeTooLarge(String),
    /// An error injected through `/_emulator/faults` (any code and status string).
    #[error("{message}")]
    Injected {
        /// HTTP status.
        code: u16,
        /// Google status string (`UNAVAILABLE`, …).
        status: String,
        /// Message.
        message: String,
    },
}

impl ApiError {
    /// 404 for a relative resource path.
    pub fn not_found(resource: impl Into<String>) -> Self {
        ApiError::NotFound {
            resource: resource.into(),
        }
    }

    /// 409 for a relative resource path.
    pub fn already_exists(resource: impl Into<String>) -> Self {
        ApiError::AlreadyExists {
            resource: resource.into(),
        }
    }

    /// 400 `invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid(message.into())
    }

    /// 400 `resourceInUseByAnotherResource` for `what` (e.g. `The address resource`) used by `user`.
    pub fn in_use(what: &str, resource: &str, user: &str) -> Self {
        ApiError::InUse(format!("The {what} '{resource}' is already being used by '{user}'"))
    }

    /// The HTTP status code.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } => 409,
            ApiError::Invalid(_) | ApiError::BadRequest(_) | ApiError::InUse(_) => 400,
            ApiError::ConditionNotMet(_) => 412,
            ApiError::FieldSizeTooLarge(_) => 413,
            ApiError::Injected { code, .. } => *code,
        }
    }

    /// The Google status string (`error.status`).
    pub fn status(&self) -> String {
        match self {
            ApiError::NotFound { .. } => "NOT_FOUND".into(),
            ApiError::AlreadyExists { .. } => "ALREADY_EXISTS".into(),
            ApiError::Invalid(_) | ApiError::BadRequest(_) | ApiError::InUse(_) | ApiError::FieldSizeTooLarge(_) => {
                "INVALID_ARGUMENT".into()
            }
            ApiError::ConditionNotMet(_) => "FAILED_PRECONDITION".into(),
            ApiError::Injected { status, .. } => status.clone(),
        }
    }

    /// The `errors[].reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "notFound",
            ApiError::AlreadyExists { .. } => "alreadyExists",
            ApiError::Invalid(_) => "invalid",
            ApiError::BadRequest(_) => "badRequest",
            ApiError::InUse(_) => "resourceInUseByAnotherResource",
            ApiError::ConditionNotMet(_) => "conditionNotMet",
            ApiError::FieldSizeTooLarge(_) => "fieldSizeTooLarge",
            ApiError::Injected { code, .. } => match code {
                403 => "forbidden",
                429 => "rateLimitExceeded",
                500 => "internalError",
                503 => "backendError",
                _ => "injected",
            },
        }
    }

    /// The `error.errors[].code` of an operation that failed this way (GCE's operation error codes).
    pub fn operation_code(&self) -> String {
        match self {
            ApiError::NotFound { .. } => "RESOURCE_NOT_FOUND".into(),
            ApiError::AlreadyExists { .. } => "RESOURCE_ALREADY_EXISTS".into(),
            ApiError::Invalid(_) => "INVALID_FIELD_VALUE".into(),
            ApiError::BadRequest(_) => "BAD_REQUEST".into(),
            ApiError::InUse(_) => "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE".into(),
            ApiError::ConditionNotMet(_) => "CONDITION_NOT_MET".into(),
            ApiError::FieldSizeTooLarge(_) => "FIELD_SIZE_TOO_LARGE".into(),
            ApiError::Injected { status, .. } => status.clone(),
        }
    }

    /// The Google error document.
    pub fn body(&self) -> serde_json::Value {
        let message = self.to_string();
        json!({
            "error": {
                "code": self.http_status(),
                "message": message,
                "status": self.status(),
                "errors": [{"message": message, "domain": "global", "reason": self.reason()}],
            }
        })
    }
}

/// The reason phrase GCE puts in `httpErrorMessage` for a status code.
pub fn http_reason_phrase(code: u16) -> String {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("ERROR")
        .to_ascii_uppercase()
}

/// The Google status string usually paired with an HTTP code (used when a fault names only a code).
pub fn default_status_for(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        (code, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_found_renders_google_error_json() {
        let body = ApiError::not_found("projects/p/zones/z/instances/x").body();
        assert_eq!(body["error"]["code"], 404);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        assert_eq!(
            body["error"]["message"],
            "The resource 'projects/p/zones/z/instances/x' was not found"
        );
        assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
        assert_eq!(body["error"]["errors"][0]["domain"], "global");
    }

    #[test]
    fn each_variant_has_its_status_string_and_reason() {
        let cases = [
            (ApiError::already_exists("r"), 409, "ALREADY_EXISTS", "alreadyExists"),
            (ApiError::invalid("x"), 400, "INVALID_ARGUMENT", "invalid"),
            (
                ApiError::in_use("disk", "d", "i"),
                400,
                "INVALID_ARGUMENT",
                "resourceInUseByAnotherResource",
            ),
            (
                ApiError::ConditionNotMet("x".into()),
                412,
                "FAILED_PRECONDITION",
                "conditionNotMet",
            ),
        ];
        for (e, code, status, reason) in cases {
            assert_eq!(e.http_status(), code);
            assert_eq!(e.status(), status);
            assert_eq!(e.reason(), reason);
        }
        assert_eq!(http_reason_phrase(412), "PRECONDITION FAILED");
    }
}

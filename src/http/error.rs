//! API errors: `{"error": "…"}` with a fitting status. 5xx bodies stay
//! generic; the cause goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header: when the client may try again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to try again in `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Something inside failed (a task that panicked, a record that would
    /// not serialize): log the cause with what was being done, answer a
    /// generic 500. Internal texts stay out of answers: they name internals
    /// and may quote data.
    pub fn internal(doing: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{doing} failed while answering a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server log has the cause",
        )
    }

    /// The store failed: log the cause, tell the client only that it may
    /// retry. An event refused while new events are paced is expected under
    /// a burst near the size limit (the store says once that pacing
    /// started): not an error per request, and it may come back once the
    /// longest wait for a turn has passed.
    pub fn store(e: crate::store::StoreError) -> Self {
        if let crate::store::StoreError::Paced {
            retry_after_secs, ..
        } = e
        {
            tracing::debug!(error = %e, "event refused");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "new events are paced while the data folder is close to --retention-size; try again",
            )
            .retry_after(retry_after_secs);
        }
        tracing::error!(error = %e, "store failure while answering a request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is unavailable; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_answer_without_their_cause() {
        let cause = "task 42 panicked with message \"key=ab+cd/ef=gh\"";
        let resp = ApiError::internal("listing runs", cause).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let text = v["error"].as_str().expect("an error message");
        assert!(
            !text.contains("panicked") && !text.contains("ab+cd"),
            "{text}"
        );
        assert!(text.contains("server log"), "{text}");
    }
}

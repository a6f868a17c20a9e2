//! The one error type at the HTTP boundary: a status, a message safe to show, and (for internal
//! errors) a cause that is logged and never sent.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("you do not have access to this")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The server has no room for this now (a bounded resource is in use); retry shortly.
    #[error("the server is busy; please try again in a moment")]
    Busy,
    #[error("something went wrong on our side; please try again")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Log internal causes with their chain; the client only ever gets `to_string()`.
    pub fn log(&self) {
        if let ApiError::Internal(cause) = self {
            let mut chain = cause.to_string();
            let mut source = cause.source();
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            tracing::error!(error = %chain, "internal error");
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Every database connection is in use: overload, not a fault. The client retries.
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool exhausted: answering 503");
                ApiError::Busy
            }
            e => ApiError::internal(e),
        }
    }
}

#[derive(Serialize)]
struct Body {
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut res = (
            self.status(),
            axum::Json(Body {
                message: self.to_string(),
            }),
        )
            .into_response();
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            ApiError::Busy => Some(2),
            _ => None,
        };
        if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

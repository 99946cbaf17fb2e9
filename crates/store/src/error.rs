use crate::{KeyValue, Revision};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a store call can fail. The API server maps each variant to one
/// Kubernetes status (noted per variant), so they are kept distinct.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Create of a key that exists (409 AlreadyExists).
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    /// Update or delete of a key that does not exist (404 NotFound).
    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// The modification-revision precondition did not hold (409 Conflict).
    /// `current` is the key's present value so a caller can retry without
    /// reading it again.
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },

    /// The requested revision is older than the compacted revision (410 Gone).
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    /// The requested revision is newer than the store's (504 "Too large resource version").
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    /// A watcher fell too far behind the writers and was ended (410 Gone).
    #[error("watch expired: the watcher fell behind by more than its buffer")]
    Expired,

    /// A value above the size limit (413 RequestEntityTooLarge).
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    /// A malformed key or continue token (400 BadRequest).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The backend cannot be reached right now; the call may be retried (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),

    /// The data on disk is not a Skiff store or is damaged (refuses to start).
    #[error("storage corrupt: {0}")]
    Corrupt(String),

    /// Anything else the backend reported (500).
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(DatabaseCorrupt) | Some(NotADatabase) => Error::Corrupt(e.to_string()),
            _ => Error::Internal(format!("sqlite: {e}")),
        }
    }
}

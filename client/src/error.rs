//! What a call can fail with: the API's own answer (typed by its code), the network, or an
//! answer that is not the API's.

use std::time::Duration;

use protocol::store::Problem;
use protocol::ErrorCode;

/// An error of a call or of a subscription.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error: `{"error": {"code", "message"}}`. Match on `code`
    /// ([`ErrorCode`]: `not_found`, `rev_mismatch`, `backlog`, ...); `message` says what to
    /// do.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code.
        code: ErrorCode,
        /// A sentence a person can act on.
        message: String,
        /// Every problem of a document, when there was more than one.
        problems: Vec<Problem>,
        /// How long the server asked to wait before trying again (429 and 503).
        retry_after: Option<Duration>,
    },
    /// The server could not be reached, or the connection failed before an answer came.
    #[error("could not reach {url}: {reason}; is the role running and the URL right?")]
    Transport {
        /// What was asked for.
        url: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The server answered something that is not the API's: a proxy's page, another program
    /// on the port, a body this client cannot read.
    #[error("{url} answered HTTP {status} with something that is not a Gorgon answer: {detail}")]
    Unexpected {
        /// What was asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong with the answer, and its start.
        detail: String,
    },
    /// A subscription could not fill a gap: the outputs between `after_seq` and `next_seq`
    /// are neither in the replay buffer nor in history (the node does not archive, or the
    /// archive is behind by more than the buffer holds). The stream goes on after it.
    #[error(
        "outputs {first}..{last} of node {node:?} in topology {topology:?} could not be read: \
         not in the replay buffer nor in history (is the node archived?)",
        first = .after_seq + 1,
        last = .next_seq - 1
    )]
    Gap {
        /// The topology.
        topology: String,
        /// The node.
        node: String,
        /// The last seq the stream gave.
        after_seq: u64,
        /// The seq of the output the stream goes on with.
        next_seq: u64,
    },
    /// An argument cannot make a request: an id that is not a slug, a URL that does not
    /// parse.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The API's error code, for an answer of the API.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the same request may succeed later unchanged: the server was unreachable,
    /// over its rate limit or backlog (429), or without Redis (503).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Api { status, .. } => *status == 429 || *status == 503,
            Error::Unexpected { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// The wait the server asked for, if it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn transport(url: &str, error: &reqwest::Error) -> Error {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport {
            url: url.to_owned(),
            reason,
        }
    }
}

/// The result of a call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

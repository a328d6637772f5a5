//! API tokens and what each may do, for every role that lets clients in (the REST API and
//! the socket.io server).
//!
//! `GORGON_API_TOKENS="token1=admin,token2=rw:sensors,token3=ro:sensors"`: `admin` may do
//! everything, `rw:<topology>` may read, write and inject in that topology, `ro:<topology>`
//! may only read it. A token may be listed several times to reach several topologies.
//! REST requests carry `Authorization: Bearer <token>`, socket.io handshakes
//! `auth: {"token": "<token>"}`. A topology a token may not read does not
//! exist for it (404), so tokens cannot probe for the names of others' topologies; one it may
//! read but not write answers 403 to writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What one caller may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Everything.
    pub admin: bool,
    /// Topologies it may read, write and inject into.
    pub write: BTreeSet<String>,
    /// Topologies it may read.
    pub read: BTreeSet<String>,
}

impl Grants {
    /// Everything: for an API without tokens.
    pub fn admin() -> Grants {
        Grants {
            admin: true,
            ..Grants::default()
        }
    }

    /// Whether the caller may see `topology`.
    pub fn reads(&self, topology: &str) -> bool {
        self.admin || self.write.contains(topology) || self.read.contains(topology)
    }

    /// Whether the caller may change and inject into `topology`.
    pub fn writes(&self, topology: &str) -> bool {
        self.admin || self.write.contains(topology)
    }
}

/// The caller of one request, as the auth middleware found it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// What it may do.
    pub grants: Arc<Grants>,
    /// Whom the rate limit counts this request against: the token's position in the list, or
    /// the client address when the API is open.
    pub key: String,
}

/// The configured tokens; `None` inside when the API is open.
#[derive(Clone, Debug, Default)]
pub struct Tokens(Option<HashMap<String, (usize, Arc<Grants>)>>);

/// Why a request was not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not configured.
    Unknown,
}

impl Tokens {
    /// Parses the `GORGON_API_TOKENS` text; `None` or blank text leaves the API open.
    pub fn parse(text: Option<&str>) -> Result<Tokens, String> {
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(Tokens(None));
        };
        let mut tokens: HashMap<String, Grants> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for (position, entry) in text.split(',').map(str::trim).enumerate() {
            let (token, scope) = entry.split_once('=').ok_or_else(|| {
                format!(
                    "entry {} of GORGON_API_TOKENS has no \"=\"; write token=admin, \
                     token=rw:<topology> or token=ro:<topology>",
                    position + 1
                )
            })?;
            let token = token.trim();
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(format!(
                    "entry {} of GORGON_API_TOKENS has an empty token or one with spaces",
                    position + 1
                ));
            }
            let grants = tokens.entry(token.to_owned()).or_insert_with(|| {
                order.push(token.to_owned());
                Grants::default()
            });
            match scope.trim().split_once(':') {
                None if scope.trim() == "admin" => grants.admin = true,
                Some(("rw", topology)) if crate::validate_slug(topology).is_ok() => {
                    grants.write.insert(topology.to_owned());
                }
                Some(("ro", topology)) if crate::validate_slug(topology).is_ok() => {
                    grants.read.insert(topology.to_owned());
                }
                _ => {
                    return Err(format!(
                        "entry {} of GORGON_API_TOKENS has scope {:?}; use admin, \
                         rw:<topology> or ro:<topology> with a topology slug",
                        position + 1,
                        scope.trim()
                    ))
                }
            }
        }
        Ok(Tokens(Some(
            tokens
                .into_iter()
                .map(|(token, grants)| {
                    let index = order.iter().position(|known| *known == token).unwrap_or(0);
                    (token, (index, Arc::new(grants)))
                })
                .collect(),
        )))
    }

    /// Whether tokens are configured.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// What `token` may do, and its position in the list (counted from 0): everything
    /// (position 0) when the API is open, whatever the token.
    pub fn grants(&self, token: Option<&str>) -> Result<(usize, Arc<Grants>), Refusal> {
        let Some(tokens) = &self.0 else {
            return Ok((0, Arc::new(Grants::admin())));
        };
        let token = token.ok_or(Refusal::Missing)?;
        let (index, grants) = tokens.get(token).ok_or(Refusal::Unknown)?;
        Ok((*index, Arc::clone(grants)))
    }

    /// The caller presenting `authorization` (the header's value), from `peer` (the client
    /// address, used as the rate-limit key when the API is open).
    pub fn caller(&self, authorization: Option<&str>, peer: &str) -> Result<Caller, Refusal> {
        if !self.is_enabled() {
            let (_, grants) = self.grants(None)?;
            return Ok(Caller {
                grants,
                key: peer.to_owned(),
            });
        }
        let token = authorization.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
        let (index, grants) = self.grants(Some(token.ok_or(Refusal::Missing)?))?;
        Ok(Caller {
            grants,
            key: format!("token-{index}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example reads as admin, rw and ro, and callers get those grants.
    #[test]
    fn parses_scopes() {
        let tokens =
            Tokens::parse(Some("t1=admin, t2=rw:sensors,t3=ro:sensors,t3=ro:rooms")).unwrap();
        let admin = tokens.caller(Some("Bearer t1"), "p").unwrap();
        assert!(admin.grants.writes("anything"));
        let rw = tokens.caller(Some("bearer t2"), "p").unwrap();
        assert!(rw.grants.writes("sensors") && !rw.grants.reads("rooms"));
        let ro = tokens.caller(Some("Bearer t3"), "p").unwrap();
        assert!(ro.grants.reads("sensors") && ro.grants.reads("rooms"));
        assert!(!ro.grants.writes("sensors"));
        assert_eq!(tokens.caller(None, "p").unwrap_err(), Refusal::Missing);
        assert_eq!(
            tokens.caller(Some("t1"), "p").unwrap_err(),
            Refusal::Missing
        );
        assert_eq!(
            tokens.caller(Some("Bearer nope"), "p").unwrap_err(),
            Refusal::Unknown
        );
    }

    /// Bad entries are refused with a message naming the entry.
    #[test]
    fn refuses_bad_entries() {
        for bad in ["t1", "t1=root", "t1=rw:Bad_Slug", "=admin", "t1=rw:"] {
            let error = Tokens::parse(Some(bad)).unwrap_err();
            assert!(error.contains("entry 1"), "{bad}: {error}");
        }
        assert!(!Tokens::parse(None).unwrap().is_enabled());
        assert!(!Tokens::parse(Some("  ")).unwrap().is_enabled());
        let open = Tokens::parse(None)
            .unwrap()
            .caller(None, "1.2.3.4")
            .unwrap();
        assert!(open.grants.admin);
        assert_eq!(open.key, "1.2.3.4");
    }
}

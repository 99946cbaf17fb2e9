//! Who sent a request (authentication) and what they may do
//! (authorization), as upstream's apiserver decides both.

pub mod abac;
pub mod authn;
pub mod authz;
pub mod pki;
pub mod rbac;
pub mod serviceaccount;

pub use authn::{Authenticator, PeerCertificate, UserInfo};
pub use authz::{Attributes, Authorizer, Decision};

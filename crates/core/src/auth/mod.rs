//! Signing in and staying signed in against Supabase Auth (GoTrue): email and password,
//! sign-up, email one-time codes, OAuth with PKCE through the system browser and a
//! loopback redirect, refresh and sign-out, and the session lifecycle that keeps an
//! author signed in for weeks without ever replaying a spent refresh token.
//!
//! - `errors`: typed errors with stable codes, and GoTrue's error shapes;
//! - `gotrue`: the wire client, stateless;
//! - `oauth`: PKCE and the one-shot loopback listener;
//! - `session`: [`SessionManager`], the session of one profile and the refresh policy.
//!
//! It never stores a token outside the session store (`secrets`), never logs one, and
//! never decides what a shell shows beyond the error's code and message.

pub mod errors;
pub mod gotrue;
pub mod oauth;
pub mod session;

pub use errors::{AuthError, SignedOutReason};
pub use gotrue::User;
pub use oauth::open_in_system_browser;
pub use session::{
    Account, OAuthOptions, SessionManager, SessionStatus, SignOutReport, SignUp, session_key,
};

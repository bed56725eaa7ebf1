//! `rohimaya signup|login|logout|whoami`: flags to core calls (`auth::SessionManager`)
//! and their results to text or JSON. Passwords come from stdin only, never from a flag;
//! nothing here prints a token.

use std::io::BufRead;

use rohimaya_core::auth::{Account, OAuthOptions, SessionManager, SessionStatus, SignUp};
use rohimaya_core::config::{Paths, Profile};

use crate::output::{Failure, Outcome, print_json};

#[derive(clap::Args)]
pub struct SignupArgs {
    #[arg(long)]
    email: String,
    /// Read the password from the first line of stdin.
    #[arg(long, required = true)]
    password_stdin: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("method").required(true).args(["password_stdin", "otp", "oauth"])))]
pub struct LoginArgs {
    #[arg(long, required_unless_present = "oauth")]
    email: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long, requires = "email")]
    password_stdin: bool,
    /// Email a one-time code, then ask for it (read from stdin).
    #[arg(long, requires = "email")]
    otp: bool,
    /// Sign in through PROVIDER (e.g. google) in the browser.
    #[arg(long, value_name = "PROVIDER")]
    oauth: Option<String>,
    /// With --oauth: print the URL only, do not open a browser.
    #[arg(long, requires = "oauth")]
    no_browser: bool,
    /// With --oauth: give up after this many seconds.
    #[arg(long, default_value_t = 300, requires = "oauth")]
    timeout: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct JsonArgs {
    #[arg(long)]
    pub json: bool,
}

/// The profile and its session, restored from the keyring.
pub async fn open(
    profile: Option<&str>,
) -> Result<(Profile, SessionManager, SessionStatus), Failure> {
    let paths = Paths::from_env();
    let profile = Profile::resolve(&paths, profile)?;
    let session = SessionManager::for_profile(&profile, &paths);
    let status = session.restore().await;
    Ok((profile, session, status))
}

fn read_stdin_line(what: &str) -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Failure::new(
            "unexpected_response",
            format!("cannot read the {what} from stdin: {e}"),
        )
    })?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        return Err(Failure::new(
            "invalid_credentials",
            format!("no {what} on stdin"),
        ));
    }
    Ok(line)
}

fn report_signed_in(account: &Account, json: bool) -> Outcome {
    if json {
        return print_json(&serde_json::json!({"signed_in": true, "account": account}));
    }
    println!(
        "Signed in as {} on profile {}.",
        account.email, account.profile
    );
    if let Some(note) = account.not_remembered_message() {
        eprintln!("warning: {note}");
    }
    Ok(())
}

pub async fn signup(profile: Option<&str>, args: SignupArgs) -> Outcome {
    let (_, session, _) = open(profile).await?;
    let password = read_stdin_line("password")?;
    match session.sign_up(&args.email, &password).await? {
        SignUp::SignedIn(account) => report_signed_in(&account, args.json),
        SignUp::ConfirmationSent { email } if args.json => {
            print_json(&serde_json::json!({"signed_in": false, "confirmation_sent_to": email}))
        }
        SignUp::ConfirmationSent { email } => {
            println!("Check {email} for a confirmation link, then run `rohimaya login`.");
            Ok(())
        }
    }
}

pub async fn login(profile: Option<&str>, args: LoginArgs) -> Outcome {
    let (_, session, _) = open(profile).await?;
    let account = if let Some(provider) = &args.oauth {
        let options = OAuthOptions {
            timeout: std::time::Duration::from_secs(args.timeout),
            ..OAuthOptions::default()
        };
        let no_browser = args.no_browser;
        session
            .sign_in_with_oauth(provider, options, move |url| {
                eprintln!("Open this address to sign in:\n{url}");
                if !no_browser && let Err(e) = rohimaya_core::auth::open_in_system_browser(url) {
                    eprintln!("(no browser could be opened: {e})");
                }
            })
            .await?
    } else {
        let email = args.email.as_deref().unwrap_or_default();
        if args.otp {
            session.send_email_code(email).await?;
            eprintln!("A sign-in code was sent to {email}. Enter it:");
            let code = read_stdin_line("code")?;
            session.sign_in_with_email_code(email, &code).await?
        } else {
            let password = read_stdin_line("password")?;
            session.sign_in_with_password(email, &password).await?
        }
    };
    report_signed_in(&account, args.json)
}

pub async fn logout(profile: Option<&str>, args: JsonArgs) -> Outcome {
    let (profile, session, status) = open(profile).await?;
    let was_signed_in = matches!(status, SessionStatus::SignedIn(_));
    let report = session.sign_out().await;
    if args.json {
        return print_json(&serde_json::json!({
            "profile": profile.name, "was_signed_in": was_signed_in, "report": report,
        }));
    }
    if was_signed_in {
        println!("Signed out of profile {}.", profile.name);
    } else {
        println!("Not signed in on profile {}.", profile.name);
    }
    if was_signed_in && let Some(problem) = &report.server_problem {
        eprintln!(
            "warning: the server did not confirm the sign-out ({problem}); this computer forgot the session anyway"
        );
    }
    if let Some(problem) = &report.keyring_problem {
        eprintln!("warning: the keyring entry could not be removed: {problem}");
    }
    Ok(())
}

pub async fn whoami(profile: Option<&str>, args: JsonArgs) -> Outcome {
    let (profile, session, status) = open(profile).await?;
    let signed_out = |reason: Option<String>, note: Option<String>| -> Outcome {
        if args.json {
            print_json(&serde_json::json!({
                "signed_in": false, "profile": profile.name, "reason": reason,
                "not_remembered_reason": note,
            }))?;
        } else {
            match &reason {
                Some(reason) => println!("Signed out: {reason} (profile {}).", profile.name),
                None => println!("Not signed in (profile {}).", profile.name),
            }
            if let Some(note) = &note {
                eprintln!("note: sessions are not remembered on this computer because {note}");
            }
        }
        Err(Failure::quiet())
    };
    match status {
        SessionStatus::SignedOut { .. } => {
            let note = session_note(&session).await;
            return signed_out(None, note);
        }
        SessionStatus::SignedIn(_) => {}
    }
    let (account, warning) = match session.verify_with_server().await {
        Ok(account) => (account, None),
        Err(rohimaya_core::auth::AuthError::SignedOut { reason }) => {
            return signed_out(Some(reason.describe().to_string()), None);
        }
        Err(e) => match session.status().await {
            SessionStatus::SignedIn(account) => (account, Some(e.to_string())),
            SessionStatus::SignedOut { reason, .. } => {
                return signed_out(reason.map(|r| r.describe().to_string()), None);
            }
        },
    };
    if args.json {
        return print_json(&serde_json::json!({
            "signed_in": true, "profile": account.profile, "user_id": account.user_id,
            "email": account.email, "remembered": account.remembered,
            "not_remembered_reason": account.not_remembered_reason,
            "verified": warning.is_none(),
        }));
    }
    println!(
        "{} (user {}) on profile {}",
        account.email, account.user_id, account.profile
    );
    if let Some(w) = warning {
        eprintln!("warning: could not check the session with the server: {w}");
    }
    Ok(())
}

/// Why sessions are not remembered, when the keyring is unusable.
async fn session_note(session: &SessionManager) -> Option<String> {
    session.not_remembered_reason().await
}

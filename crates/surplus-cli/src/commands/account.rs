//! `surplus signup`, `login`, `logout` and `ledger`: the subscriber's account.

use std::io::IsTerminal;

use anyhow::bail;
use surplus_agent::control::Control;
use surplus_agent::credentials::SessionCredential;
use surplus_agent::units::format_size;
use surplus_protocol::Credentials;

use crate::print::{print_json, time};

/// The password from `SURPLUS_PASSWORD`, or typed at a prompt (twice when choosing one).
pub(crate) fn password(confirm: bool) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("SURPLUS_PASSWORD") {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: set SURPLUS_PASSWORD or run in a terminal to be asked");
    }
    let password = rpassword::prompt_password("Password: ")?;
    if confirm && rpassword::prompt_password("Password again: ")? != password {
        bail!("the passwords differ");
    }
    Ok(password)
}

pub(crate) async fn account(context: &Control, email: String, signup: bool) -> anyhow::Result<()> {
    let client = context.client()?;
    let credentials = Credentials {
        email,
        password: password(signup)?,
    };
    let session = if signup {
        client.signup(&credentials).await?
    } else {
        client.login(&credentials).await?
    };
    context.credentials()?.set_session(&SessionCredential {
        token: session.token.clone(),
        email: session.subscriber.email.clone(),
    })?;
    let hub = client.base().to_owned();
    let trust = context.trust()?;
    context.update(|s| {
        s.hub_url = Some(hub);
        s.hub_trust = trust;
    })?;
    let verb = if signup {
        "signed up and logged in"
    } else {
        "logged in"
    };
    println!(
        "{verb} as {} ({} plan) at {}",
        session.subscriber.email,
        session.subscriber.plan.as_str(),
        client.base()
    );
    Ok(())
}

/// Ends this PC's log-in session, or every session of the account.
pub async fn logout(context: &Control, everywhere: bool) -> anyhow::Result<()> {
    context.logout(everywhere).await?;
    println!("logged out{}", if everywhere { " everywhere" } else { "" });
    Ok(())
}

/// The allocation ledger: every portion of a device's resources given to a subscriber.
pub async fn ledger(context: &Control, json: bool) -> anyhow::Result<()> {
    let ledger = context
        .client()?
        .allocations(&context.session()?.token)
        .await?;
    if json {
        return print_json(&ledger);
    }
    println!(
        "{:<20} {:<24} {:<16} {:<8} {:>10} {:<10} PURPOSE",
        "CREATED", "FOR", "ON DEVICE", "KIND", "AMOUNT", "STATE"
    );
    for a in ledger {
        println!(
            "{:<20} {:<24} {:<16} {:<8} {:>10} {:<10} {}",
            time(Some(a.created_at)),
            a.subscriber,
            a.device_name,
            a.kind.as_str(),
            match a.kind {
                surplus_protocol::ResourceKind::Storage => format_size(a.amount),
                surplus_protocol::ResourceKind::Compute => {
                    format!("{:.3} core-s", a.amount as f64 / 1000.0)
                }
            },
            a.state.as_str(),
            a.purpose
        );
    }
    Ok(())
}

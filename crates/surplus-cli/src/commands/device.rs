//! `surplus device ...` and `surplus leave`: this machine as a device of the account.

use std::time::Duration;

use anyhow::bail;
use surplus_agent::control::Control;
use surplus_agent::credentials::DeviceCredential;
use surplus_agent::probe::{OverrideProbe, SystemProbe};
use surplus_agent::units::{self, format_size};

use crate::DeviceCommand;
use crate::print::{print_json, time};

pub(crate) async fn device(context: &Control, command: DeviceCommand) -> anyhow::Result<()> {
    let client = context.client()?;
    let session = context.session()?;
    match command {
        DeviceCommand::Register { name, force } => {
            let credentials = context.credentials()?;
            if let Some(existing) = credentials.device()?
                && !force
            {
                bail!(
                    "this data directory is already registered as device {}; pass --force to register it again",
                    existing.device_id
                );
            }
            let registered = client.register_device(&session.token, &name).await?;
            credentials.set_device(&DeviceCredential {
                device_id: registered.device_id,
                secret: registered.secret,
            })?;
            context.update(|s| s.device_name = Some(name.clone()))?;
            println!("registered {name} as device {}", registered.device_id);
            println!("its credential is kept in the {}", credentials.backend());
            Ok(())
        }
        DeviceCommand::List { json } => {
            let devices = client.devices(&session.token).await?;
            if json {
                return print_json(&devices);
            }
            println!(
                "{:<36} {:<16} {:<8} {:>10} {:>5}  LAST HEARTBEAT",
                "ID", "NAME", "ONLINE", "SPARE", "SLOTS"
            );
            for d in devices {
                let online = if d.revoked_at.is_some() {
                    "revoked"
                } else if d.online {
                    "yes"
                } else {
                    "no"
                };
                println!(
                    "{:<36} {:<16} {:<8} {:>10} {:>5}  {}",
                    d.id,
                    d.name,
                    online,
                    format_size(d.spare_storage_bytes),
                    d.compute_slots,
                    time(d.last_heartbeat)
                );
            }
            Ok(())
        }
        DeviceCommand::Revoke { id } => {
            client.revoke_device(&session.token, id).await?;
            let credentials = context.credentials()?;
            if credentials.device()?.is_some_and(|d| d.device_id == id) {
                credentials.clear_device()?;
                println!("revoked device {id} (this machine); register it again to donate");
            } else {
                println!("revoked device {id}");
            }
            Ok(())
        }
    }
}

pub(crate) async fn leave(context: &Control, wait: Duration) -> anyhow::Result<()> {
    let probe = Box::new(OverrideProbe::from_env(SystemProbe::new()));
    let mut last = None;
    let left = context
        .leave(wait, probe, |holdings| {
            let line = match &holdings.handover {
                Some(handover) => format!(
                    "handing over {}: {}% ({} left in {} blob(s))",
                    units::format_size(handover.remaining_bytes + handover.moved_bytes),
                    handover.percent(),
                    units::format_size(handover.remaining_bytes),
                    handover.remaining_blobs
                ),
                None if holdings.held_blobs > 0 => format!(
                    "{} in {} blob(s) to hand over",
                    units::format_size(holdings.held_bytes),
                    holdings.held_blobs
                ),
                None => "nothing of anyone else's is left here".to_owned(),
            };
            if last.as_ref() != Some(&line) {
                println!("{line}");
                last = Some(line);
            }
        })
        .await?;
    println!("this device left: it donates nothing and is no longer registered");
    if left.leftover_bytes > 0 {
        println!(
            "{} in {} belongs to nobody now: delete the folder when you like",
            units::format_size(left.leftover_bytes),
            left.vault_dir.display()
        );
    }
    Ok(())
}

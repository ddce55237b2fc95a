//! `surplus blob ...`: files kept as they are on other devices' vaults, a tool for tests and
//! operators.

use std::time::Duration;

use surplus_agent::control::Control;
use surplus_agent::units::Size;

use crate::BlobCommand;
use crate::print::print_json;

pub(crate) async fn blob(context: &Control, command: BlobCommand) -> anyhow::Result<()> {
    let client = context.client()?;
    let token = context.any_token()?;
    let placement = match command {
        BlobCommand::Put { file, copies, json } => {
            let rate = context.settings()?.bandwidth_bytes_per_second;
            let blob = client.upload_file(&token, &file, rate).await?;
            let placement = client.place_blob(&token, &blob.hash, copies).await?;
            if json {
                return print_json(&placement);
            }
            println!(
                "uploaded {} ({}) as {}",
                file.display(),
                Size(blob.size),
                blob.hash
            );
            placement
        }
        BlobCommand::Get { hash, out, wait } => {
            let size = client
                .fetch_blob_to(&token, &hash, &out, Duration::from_secs(wait))
                .await?;
            println!("got {hash} back into {} ({})", out.display(), Size(size));
            return Ok(());
        }
        BlobCommand::Status { hash, json } => {
            let placement = client.placement(&token, &hash).await?;
            if json {
                return print_json(&placement);
            }
            placement
        }
    };
    println!(
        "wanted on {} holder(s); staged at the hub: {}",
        placement.copies,
        if placement.staged { "yes" } else { "no" }
    );
    if placement.holders.is_empty() {
        println!(
            "no holder yet: no other device has spare storage right now; the hub keeps trying"
        );
    }
    for holder in placement.holders {
        println!("  {} on device {}", holder.state.as_str(), holder.device_id);
    }
    Ok(())
}

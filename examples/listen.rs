//! LISTENs on a channel and prints every notification as it arrives, while
//! the connection is otherwise idle.
//!
//! ```sh
//! cargo run --example listen -- "postgres://user@localhost/db" jobs
//! # elsewhere: psql -c "NOTIFY jobs, 'hello'"
//! ```

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(conninfo), Some(channel)) = (args.next(), args.next()) else {
        eprintln!("usage: listen CONNINFO CHANNEL");
        return ExitCode::from(2);
    };
    let result = async {
        let config = pg_transport::Config::parse_with_env(&conninfo)?;
        let (mut client, _) = pg_transport::connect(&config).await?;
        client.listen(&channel).await?;
        eprintln!("listening on {channel:?}; Ctrl-C to stop");
        loop {
            match client.wait_notification(None).await {
                Ok(Some(n)) => println!("{} from pid {}: {}", n.channel, n.process_id, n.payload),
                Ok(None) => {}
                // Dropped notifications are reported once; keep going.
                Err(e) if e.kind() == pg_transport::ErrorKind::NotificationOverflow => {
                    eprintln!("{e}")
                }
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("listen failed: {e}");
            ExitCode::FAILURE
        }
    }
}

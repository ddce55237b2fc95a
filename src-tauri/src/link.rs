//! How the windows process talks to the tray process: one line per connection over a local socket
//! (a Unix socket in the data directory, which only its user can open; a named pipe on Windows),
//! answered with one line. The tray holds the socket, so it is also how a second tray learns
//! that one runs already.

use std::io::{self, Read, Write};
use std::path::Path;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{Listener, ListenerOptions, Name, Stream};

/// The longest line either side sends.
const MAX_LINE: usize = 1024;

/// What the windows process, or a second launch, asks of the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Open a window (a second launch, or the old login entry).
    Show(String),
    /// The settings file changed: report to the hub now, and show it in the tray.
    SettingsChanged,
    /// The device was just registered: start donating.
    Enrolled,
    /// Take a backup now.
    BackUpNow,
    /// Keep this connection open while the tray runs; it closes when the tray ends, and the
    /// windows end with it.
    Watch,
}

impl Message {
    fn line(&self) -> String {
        match self {
            Message::Show(page) => format!("show {page}"),
            Message::SettingsChanged => "settings-changed".into(),
            Message::Enrolled => "enrolled".into(),
            Message::BackUpNow => "back-up-now".into(),
            Message::Watch => "watch".into(),
        }
    }

    fn parse(line: &str) -> Option<Message> {
        Some(match line {
            "settings-changed" => Message::SettingsChanged,
            "enrolled" => Message::Enrolled,
            "back-up-now" => Message::BackUpNow,
            "watch" => Message::Watch,
            _ => Message::Show(line.strip_prefix("show ")?.to_owned()),
        })
    }
}

/// The socket's name for the tray of `data_dir`.
fn name(data_dir: &Path) -> io::Result<Name<'static>> {
    #[cfg(unix)]
    {
        use interprocess::local_socket::GenericFilePath;
        data_dir.join("tray.sock").to_fs_name::<GenericFilePath>()
    }
    #[cfg(not(unix))]
    {
        use interprocess::local_socket::GenericNamespaced;
        use std::hash::{Hash, Hasher};
        // Named pipes live in one namespace for the machine: one per data directory. Both sides
        // are built together, so the hasher is the same on each.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data_dir.hash(&mut hasher);
        format!("surplus-tray-{:016x}", hasher.finish()).to_ns_name::<GenericNamespaced>()
    }
}

fn read_line(stream: &mut Stream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte)? {
            0 if line.is_empty() => return Err(io::ErrorKind::UnexpectedEof.into()),
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ if line.len() >= MAX_LINE => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            _ => line.push(byte[0]),
        }
    }
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Why the tray did not do what it was asked.
#[derive(Debug)]
pub enum SendError {
    /// No tray runs for this data directory.
    NotRunning(io::Error),
    /// The tray answered with a refusal, in words for the user.
    Refused(String),
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotRunning(_) => write!(f, "Surplus is not running in the tray"),
            SendError::Refused(why) => write!(f, "{why}"),
            SendError::Io(error) => write!(f, "cannot reach Surplus in the tray: {error}"),
        }
    }
}

impl std::error::Error for SendError {}

fn connect(data_dir: &Path) -> Result<Stream, SendError> {
    Stream::connect(name(data_dir).map_err(SendError::Io)?).map_err(SendError::NotRunning)
}

/// Asks the tray of `data_dir` to do something, and waits for its answer.
pub fn send(data_dir: &Path, message: &Message) -> Result<(), SendError> {
    let mut stream = connect(data_dir)?;
    stream
        .write_all(format!("{}\n", message.line()).as_bytes())
        .map_err(SendError::Io)?;
    let answer = read_line(&mut stream).map_err(SendError::Io)?;
    match answer.strip_prefix("no: ") {
        None if answer == "ok" => Ok(()),
        None => Err(SendError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {answer:?}"),
        ))),
        Some(why) => Err(SendError::Refused(why.to_owned())),
    }
}

/// Blocks while the tray of `data_dir` runs; returns when it has ended. Fails at once when no
/// tray runs.
pub fn watch(data_dir: &Path) -> Result<(), SendError> {
    let mut stream = connect(data_dir)?;
    stream
        .write_all(format!("{}\n", Message::Watch.line()).as_bytes())
        .map_err(SendError::Io)?;
    let mut rest = [0u8; 64];
    // The tray never writes on a watched connection: any end of it is the tray's end.
    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    Ok(())
}

/// The tray's end of the socket.
pub struct TrayListener(Listener);

/// Takes the socket of `data_dir`'s tray. `None` when another tray holds it and answers.
pub fn listen(data_dir: &Path) -> io::Result<Option<TrayListener>> {
    let name = name(data_dir)?;
    let options = || ListenerOptions::new().name(name.borrow());
    match options().create_sync() {
        Ok(listener) => return Ok(Some(TrayListener(listener))),
        Err(error) if error.kind() != io::ErrorKind::AddrInUse => return Err(error),
        Err(_) => {}
    }
    if connect(data_dir).is_ok() {
        return Ok(None);
    }
    // A socket left by a tray that ended without removing it.
    let listener = options().try_overwrite(true).create_sync()?;
    Ok(Some(TrayListener(listener)))
}

impl TrayListener {
    /// Answers each request on a thread of its own: `handle` gets the message and answers
    /// `Err(words)` to refuse it. A watching connection is held by a thread of its own until its
    /// windows process closes it, or this process ends.
    pub fn serve<F>(self, handle: F) -> io::Result<()>
    where
        F: Fn(Message) -> Result<(), String> + Send + 'static,
    {
        std::thread::Builder::new()
            .name("surplus-link".into())
            .spawn(move || {
                for stream in self.0.incoming() {
                    let mut stream = match stream {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::warn!(%error, "a connection to the tray failed");
                            continue;
                        }
                    };
                    let answer = match read_line(&mut stream).map(|line| Message::parse(&line)) {
                        Ok(Some(Message::Watch)) => {
                            let held = std::thread::Builder::new()
                                .name("surplus-watcher".into())
                                .spawn(move || {
                                    let mut rest = [0u8; 64];
                                    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
                                });
                            if let Err(error) = held {
                                tracing::warn!(%error, "cannot hold a watching connection");
                            }
                            continue;
                        }
                        Ok(Some(message)) => match handle(message) {
                            Ok(()) => "ok".to_owned(),
                            Err(why) => format!("no: {}", why.replace('\n', " ")),
                        },
                        Ok(None) => "no: unknown request".to_owned(),
                        Err(error) => format!("no: {error}"),
                    };
                    if let Err(error) = stream.write_all(format!("{answer}\n").as_bytes()) {
                        tracing::debug!(%error, "a client left before its answer");
                    }
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn messages_read_back_as_written() {
        for message in [
            Message::Show("settings".into()),
            Message::SettingsChanged,
            Message::Enrolled,
            Message::BackUpNow,
            Message::Watch,
        ] {
            assert_eq!(Message::parse(&message.line()), Some(message));
        }
        assert_eq!(Message::parse("format-disk"), None);
    }

    #[test]
    fn one_tray_per_data_directory_answering_and_refusing() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        assert!(matches!(
            send(dir.path(), &Message::BackUpNow),
            Err(SendError::NotRunning(_))
        ));
        let listener = listen(dir.path())
            .expect("works")
            .expect("the first tray takes the socket");
        let (got, heard) = mpsc::channel();
        listener
            .serve(move |message| {
                let refuse = message == Message::BackUpNow;
                got.send(message).expect("works");
                if refuse {
                    Err("this PC is not set up yet".into())
                } else {
                    Ok(())
                }
            })
            .expect("works");
        assert!(
            listen(dir.path()).expect("works").is_none(),
            "a second tray hands over"
        );
        send(dir.path(), &Message::Show("status".into())).expect("works");
        assert_eq!(heard.recv().expect("works"), Message::Show("status".into()));
        let refused = send(dir.path(), &Message::BackUpNow).expect_err("refused");
        assert_eq!(refused.to_string(), "this PC is not set up yet");
    }

    #[cfg(unix)]
    #[test]
    fn a_socket_left_by_an_ended_tray_is_taken_over() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        // A socket file nobody listens on, as a killed tray leaves it.
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("tray.sock")).expect("works"));
        assert!(dir.path().join("tray.sock").exists());
        let listener = listen(dir.path()).expect("works");
        assert!(listener.is_some(), "the stale socket is replaced");
    }
}

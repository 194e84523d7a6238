//! Hand-over of the listening sockets from a running `sprout server` to the next one on the
//! same data directory (a restart or an upgrade), so no connection is refused or reset.
//!
//! Why a hand-over over a Unix socket (`SCM_RIGHTS`, as HAProxy's seamless reload and
//! pingora's upgrade do) rather than a second set of `SO_REUSEPORT` sockets: with two sets
//! the kernel hashes each new connection to one socket of either set, and the connections
//! waiting in the old set's queues when the old server closes them are reset. Passed
//! descriptors are the very same kernel sockets: their queues carry over, and for a moment
//! both processes accept from them, which is harmless.
//!
//! The dialogue, on `<data>/handover.sock` (mode 0600, peers of another user refused):
//!
//! ```text
//! next → running   prepare
//! running          stops its control loops (reconciler, autoscaler, dispatcher, cron,
//!                  schedules) and records the backends in rotation
//! running → next   sockets <api> <sqs> <balancer>  + that many descriptors (SCM_RIGHTS)
//! next             restores every route and the last known health from the store
//! next → running   taken
//! running → next   ok       then it stops accepting, finishes its requests and exits
//! ```
//!
//! If the next server goes away before `taken`, the running one starts its loops again and
//! carries on as if nothing happened.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// How long the next server waits for each answer of the running one (stopping its loops
/// waits for a reconcile pass under way to finish).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a running server waits for the next one between two steps of the dialogue
/// (restoring routes asks Docker for every container).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Most descriptors one hand-over carries: the API, the SQS endpoint and one balancer socket
/// per core.
const MAX_FDS: usize = 256;

/// The listening sockets a server serves on.
pub struct Sockets {
    pub api: TcpListener,
    pub sqs: TcpListener,
    /// One per balancer thread (`SO_REUSEPORT` group).
    pub balancer: Vec<TcpListener>,
}

impl Sockets {
    /// New descriptors for the same sockets, to hand over while these keep serving.
    pub fn try_clone(
        api: &tokio::net::TcpListener,
        sqs: &tokio::net::TcpListener,
        balancer: &sprout_proxy::PerCoreListeners,
    ) -> io::Result<Sockets> {
        Ok(Sockets {
            api: dup(api.as_fd())?,
            sqs: dup(sqs.as_fd())?,
            balancer: balancer.try_clone_sockets()?,
        })
    }
}

fn dup(fd: BorrowedFd<'_>) -> io::Result<TcpListener> {
    Ok(TcpListener::from(fd.try_clone_to_owned()?))
}

/// Where the running server of a data directory waits for its successor.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("handover.sock")
}

fn protocol(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The running server, seen from the next one.
pub struct Predecessor {
    stream: UnixStream,
}

impl Predecessor {
    /// Connects to the server running on this data directory; `None` when none runs (no
    /// socket, or a stale one left by a crash).
    pub async fn find(data: &Path) -> io::Result<Option<Predecessor>> {
        match UnixStream::connect(socket_path(data)).await {
            Ok(stream) => Ok(Some(Predecessor { stream })),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks for the sockets: the running server stops its control loops and sends them.
    /// It keeps accepting until [`Predecessor::taken`].
    pub async fn sockets(&mut self) -> io::Result<Sockets> {
        self.stream.write_all(b"prepare\n").await?;
        tokio::time::timeout(ANSWER_TIMEOUT, self.receive())
            .await
            .map_err(|_| protocol("the running server did not send its sockets in time"))?
    }

    async fn receive(&mut self) -> io::Result<Sockets> {
        let mut line = Vec::new();
        let mut fds: Vec<OwnedFd> = Vec::new();
        while !line.ends_with(b"\n") {
            if line.len() > 256 {
                return Err(protocol("an overlong answer"));
            }
            let mut buf = [0u8; 64];
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let got = self.stream.async_io(Interest::READABLE, || {
                rustix::net::recvmsg(
                    &self.stream,
                    &mut [io::IoSliceMut::new(&mut buf)],
                    &mut control,
                    rustix::net::RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)
            });
            let got = got.await?;
            for message in control.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            if got.bytes == 0 {
                return Err(protocol("the running server closed the hand-over"));
            }
            line.extend_from_slice(&buf[..got.bytes]);
        }
        let text = String::from_utf8_lossy(&line);
        let counts: Vec<usize> = text
            .trim()
            .strip_prefix("sockets ")
            .ok_or_else(|| protocol(format!("unexpected answer '{}'", text.trim())))?
            .split(' ')
            .map(|n| n.parse().map_err(|_| protocol("a bad socket count")))
            .collect::<io::Result<_>>()?;
        let [1, 1, balancer] = counts[..] else {
            return Err(protocol(format!(
                "unexpected socket counts '{}'",
                text.trim()
            )));
        };
        if balancer == 0 || fds.len() != 2 + balancer {
            return Err(protocol(format!(
                "{} descriptors for '{}'",
                fds.len(),
                text.trim()
            )));
        }
        let mut fds = fds.into_iter().map(TcpListener::from);
        let (Some(api), Some(sqs)) = (fds.next(), fds.next()) else {
            return Err(protocol("descriptors missing"));
        };
        Ok(Sockets {
            api,
            sqs,
            balancer: fds.collect(),
        })
    }

    /// Tells the running server that this one serves now; it stops accepting and exits
    /// once its requests are done. An error means it did not confirm (and may still be
    /// running its loops): this server must not go on.
    pub async fn taken(mut self) -> io::Result<()> {
        self.stream.write_all(b"taken\n").await?;
        let mut answer = String::new();
        tokio::time::timeout(
            ANSWER_TIMEOUT,
            BufReader::new(&mut self.stream).read_line(&mut answer),
        )
        .await
        .map_err(|_| protocol("the running server did not confirm the hand-over"))??;
        if answer.trim() != "ok" {
            return Err(protocol("the running server did not confirm the hand-over"));
        }
        Ok(())
    }
}

/// What a hand-over asks of the running server's main task.
pub enum Event {
    /// Stop the control loops and record health; answer when done.
    Prepare(oneshot::Sender<()>),
    /// The next server went away before taking over: start the loops again.
    Gone,
    /// The next server serves now: stop accepting, drain and exit.
    Taken,
}

/// The running server's side: waits for a successor on `<data>/handover.sock`.
pub struct Offer {
    listener: UnixListener,
    path: PathBuf,
}

impl Offer {
    /// Listens on the data directory's hand-over socket (replacing a stale one, or the
    /// one of the server this one took over from).
    pub fn listen(data: &Path) -> io::Result<Offer> {
        use std::os::unix::fs::PermissionsExt;
        let path = socket_path(data);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        // Whoever connects can take the listening sockets: only this user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Offer { listener, path })
    }

    /// Serves successors one at a time until one has taken the sockets.
    pub async fn serve(self, sockets: Sockets, events: mpsc::Sender<Event>) {
        let me = rustix::process::geteuid().as_raw();
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "hand-over socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == me => {}
                other => {
                    let uid = other.ok().map(|c| c.uid());
                    tracing::warn!(?uid, "hand-over refused to a process of another user");
                    continue;
                }
            }
            match dialogue(stream, &sockets, &events).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "hand-over to a next server failed; serving on");
                    let _ = events.send(Event::Gone).await;
                }
            }
        }
    }

    /// Where the socket is, to remove it when this server stops without a successor.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One successor's dialogue. `Ok(true)`: it took the sockets. `Ok(false)`: it left before
/// asking for anything.
async fn dialogue(
    stream: UnixStream,
    sockets: &Sockets,
    events: &mpsc::Sender<Event>,
) -> io::Result<bool> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(false);
    }
    if line.trim() != "prepare" {
        return Err(protocol(format!("unexpected request '{}'", line.trim())));
    }
    tracing::info!("a next server asks for the sockets: stopping the control loops");
    let (done_tx, done_rx) = oneshot::channel();
    events
        .send(Event::Prepare(done_tx))
        .await
        .map_err(|_| protocol("the server is stopping"))?;
    done_rx
        .await
        .map_err(|_| protocol("the server is stopping"))?;

    let fds: Vec<BorrowedFd<'_>> = [sockets.api.as_fd(), sockets.sqs.as_fd()]
        .into_iter()
        .chain(sockets.balancer.iter().map(|s| s.as_fd()))
        .collect();
    let text = format!("sockets 1 1 {}\n", sockets.balancer.len());
    let stream = reader.get_ref();
    let mut space =
        vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
            if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
                return Err(protocol("too many descriptors"));
            }
            rustix::net::sendmsg(
                stream,
                &[io::IoSlice::new(text.as_bytes())],
                &mut control,
                rustix::net::SendFlags::empty(),
            )
            .map_err(io::Error::from)
        })
        .await?;
    if sent != text.len() {
        return Err(protocol("the socket list was cut short"));
    }

    line.clear();
    let read = tokio::time::timeout(STEP_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| protocol("the next server did not take the sockets in time"))??;
    if read == 0 || line.trim() != "taken" {
        return Err(protocol("the next server left before taking the sockets"));
    }
    reader.get_mut().write_all(b"ok\n").await?;
    let _ = events.send(Event::Taken).await;
    Ok(true)
}

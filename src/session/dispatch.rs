//! Routing of what the server sends unasked: notifications to a bounded queue
//! and/or a callback, notices to a callback or `tracing`.

use std::collections::VecDeque;
use std::fmt;
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::protocol::DbError;

/// A LISTEN/NOTIFY notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Process id of the notifying backend.
    pub process_id: i32,
    /// The channel it was sent on.
    pub channel: String,
    /// The payload; empty if none was given.
    pub payload: String,
}

/// How notifications reach the application.
///
/// Callbacks cannot fail and run inside parsing, so they should be quick (hand
/// the notification to a channel, say).
#[derive(Default)]
pub enum NotificationDelivery {
    /// Into the queue, for [`Session::pop_notification`](super::Session::pop_notification)
    /// and its async forms. The default.
    #[default]
    Queue,
    /// To the callback only; the queue stays empty.
    Callback(Box<dyn FnMut(&Notification) + Send>),
    /// To the callback, then into the queue.
    Both(Box<dyn FnMut(&Notification) + Send>),
}

impl fmt::Debug for NotificationDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Queue => "Queue",
            Self::Callback(_) => "Callback(..)",
            Self::Both(_) => "Both(..)",
        })
    }
}

/// The pull side of notification delivery: a FIFO, bounded or not.
///
/// With a capacity, a full queue drops its oldest entry for each new one and
/// counts the drops; the next pull reports the overflow once (an error of kind
/// [`NotificationOverflow`](crate::ErrorKind::NotificationOverflow) with the
/// count) before the surviving notifications. Capacity 0 means unbounded.
#[derive(Debug, Default)]
pub struct NotificationQueue {
    items: VecDeque<Notification>,
    capacity: usize,
    /// Drops not yet reported to a puller.
    dropped_unreported: u64,
    /// Drops over the queue's life (saturating).
    dropped_total: u64,
    waker: Option<Waker>,
}

impl NotificationQueue {
    /// A queue holding at most `capacity` notifications (0 = unbounded).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Appends `n`, dropping the oldest if the queue is full, and wakes a waiting puller.
    pub fn push(&mut self, n: Notification) {
        if self.capacity != 0 && self.items.len() >= self.capacity {
            self.items.pop_front();
            self.dropped_unreported = self.dropped_unreported.saturating_add(1);
            self.dropped_total = self.dropped_total.saturating_add(1);
        }
        self.items.push_back(n);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The next notification, or the overflow report if some were dropped since
    /// the last pull; `None` when empty.
    pub fn pop(&mut self) -> Option<Result<Notification, Error>> {
        if self.dropped_unreported > 0 {
            let dropped = std::mem::take(&mut self.dropped_unreported);
            return Some(Err(Error::notification_overflow(dropped, self.capacity)));
        }
        self.items.pop_front().map(Ok)
    }

    /// Like [`NotificationQueue::pop`], but registers `cx`'s waker when empty; a
    /// later [`NotificationQueue::push`] wakes it.
    pub fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Result<Notification, Error>> {
        match self.pop() {
            Some(item) => Poll::Ready(item),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Notifications waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The capacity (0 = unbounded).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Notifications dropped over the queue's life (saturating).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

/// Everything the session routes without returning it.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    pub(crate) queue: NotificationQueue,
    pub(crate) delivery: NotificationDelivery,
    pub(crate) notice: Option<NoticeSink>,
}

/// Wraps the notice callback so `Dispatch` can derive `Debug`.
pub(crate) struct NoticeSink(pub(crate) Box<dyn FnMut(&DbError) + Send>);

impl fmt::Debug for NoticeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoticeSink(..)")
    }
}

impl Dispatch {
    pub(crate) fn notification(&mut self, n: Notification) {
        match &mut self.delivery {
            NotificationDelivery::Queue => self.queue.push(n),
            NotificationDelivery::Callback(cb) => cb(&n),
            NotificationDelivery::Both(cb) => {
                cb(&n);
                self.queue.push(n);
            }
        }
    }

    pub(crate) fn notice(&mut self, notice: &DbError) {
        match &mut self.notice {
            Some(NoticeSink(cb)) => cb(notice),
            None => log_notice(notice),
        }
    }
}

/// The default notice sink: `tracing`, at a level that follows the severity.
fn log_notice(n: &DbError) {
    let code = n.code.code();
    match n.severity_code() {
        "WARNING" | "ERROR" | "FATAL" | "PANIC" => {
            tracing::warn!(target: "pg_transport::notice", severity = %n.severity, code, detail = ?n.detail, hint = ?n.hint, "{}", n.message);
        }
        "DEBUG" => {
            tracing::debug!(target: "pg_transport::notice", severity = %n.severity, code, "{}", n.message);
        }
        _ => {
            tracing::info!(target: "pg_transport::notice", severity = %n.severity, code, detail = ?n.detail, hint = ?n.hint, "{}", n.message);
        }
    }
}

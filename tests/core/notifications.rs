//! Group E: the notification queue and delivery modes.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use pg_transport::session::NotificationQueue;
use pg_transport::{ErrorKind, Notification, NotificationDelivery, SessionConfig};

use crate::support::*;

fn n(i: u32) -> Notification {
    Notification {
        process_id: 1,
        channel: "c".into(),
        payload: i.to_string(),
    }
}

#[test]
fn e54_bounded_queue_drops_oldest_and_reports_once() {
    let mut q = NotificationQueue::new(3);
    for i in 1..=5 {
        q.push(n(i));
    }
    assert_eq!(q.len(), 3);
    assert_eq!(q.dropped_total(), 2);
    let overflow = q.pop().unwrap().unwrap_err();
    assert_eq!(overflow.kind(), ErrorKind::NotificationOverflow);
    assert_eq!(overflow.notifications_dropped(), Some(2));
    let rest: Vec<String> = std::iter::from_fn(|| q.pop())
        .map(|r| r.unwrap().payload)
        .collect();
    assert_eq!(rest, ["3", "4", "5"]);
}

#[test]
fn e54_through_the_session() {
    let mut s = ready_session(SessionConfig::default().notification_capacity(3));
    let stream: Vec<u8> = (1..=5)
        .flat_map(|i| notification(1, "c", &i.to_string()))
        .collect();
    s.feed(&stream).unwrap();
    assert!(s.next_message().unwrap().is_none());
    assert_eq!(
        s.pop_notification()
            .unwrap()
            .unwrap_err()
            .notifications_dropped(),
        Some(2)
    );
    assert_eq!(s.pop_notification().unwrap().unwrap().payload, "3");
}

#[test]
fn e55_unbounded_keeps_everything_in_order() {
    let mut q = NotificationQueue::new(0);
    for i in 0..20 {
        q.push(n(i));
    }
    assert_eq!(q.dropped_total(), 0);
    let got: Vec<String> = std::iter::from_fn(|| q.pop())
        .map(|r| r.unwrap().payload)
        .collect();
    assert_eq!(got, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
}

struct Flag(Mutex<bool>);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        *self.0.lock().unwrap() = true;
    }
}

#[test]
fn e56_waiter_registered_before_arrival_completes() {
    let mut s = ready_session(SessionConfig::default());
    let flag = Arc::new(Flag(Mutex::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(s.poll_notification(&mut cx).is_pending());
    s.feed(&notification(5, "jobs", "payload-1")).unwrap();
    assert!(s.next_message().unwrap().is_none());
    assert!(*flag.0.lock().unwrap(), "the waiter was woken");
    match s.poll_notification(&mut cx) {
        Poll::Ready(Ok(got)) => assert_eq!(
            (got.channel.as_str(), got.payload.as_str()),
            ("jobs", "payload-1")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn e58_callback_and_queue_both_get_everything_in_order() {
    let mut s = ready_session(SessionConfig::default());
    let pushed = Arc::new(Mutex::new(Vec::new()));
    let p = pushed.clone();
    s.set_notification_delivery(NotificationDelivery::Both(Box::new(move |n| {
        p.lock().unwrap().push(n.payload.clone())
    })));
    let stream: Vec<u8> = (0..10)
        .flat_map(|i| notification(1, "c", &i.to_string()))
        .collect();
    s.feed(&stream).unwrap();
    assert!(s.next_message().unwrap().is_none());
    let pulled: Vec<String> = std::iter::from_fn(|| s.pop_notification())
        .map(|r| r.unwrap().payload)
        .collect();
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(pulled, expected);
    assert_eq!(*pushed.lock().unwrap(), expected);
}

#[test]
fn e58_callback_only_leaves_the_queue_empty() {
    let mut s = ready_session(SessionConfig::default());
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    s.set_notification_delivery(NotificationDelivery::Callback(Box::new(move |_| {
        *c.lock().unwrap() += 1
    })));
    s.feed(&notification(1, "c", "x")).unwrap();
    assert!(s.next_message().unwrap().is_none());
    assert_eq!(*count.lock().unwrap(), 1);
    assert!(s.pop_notification().is_none());
}

/// E59: pulling needs `&mut Session`, so two pullers cannot exist at once. The
/// compile-fail doctest on `Session::pop_notification` proves it; this checks
/// the signature the doctest relies on.
#[test]
fn e59_pulling_takes_exclusive_access() {
    let pull: fn(&mut pg_transport::Session) -> Option<pg_transport::Result<Notification>> =
        pg_transport::Session::pop_notification;
    let mut s = ready_session(SessionConfig::default());
    assert!(pull(&mut s).is_none());
}

/// The default queue is bounded: a session nobody pulls from holds at most
/// `DEFAULT_NOTIFICATION_CAPACITY` notifications and reports the rest dropped.
#[test]
fn default_queue_is_bounded() {
    use pg_transport::protocol::limits::DEFAULT_NOTIFICATION_CAPACITY;
    let mut s = ready_session(SessionConfig::default());
    let stream: Vec<u8> = (0..=DEFAULT_NOTIFICATION_CAPACITY)
        .flat_map(|i| notification(1, "c", &i.to_string()))
        .collect();
    s.feed(&stream).unwrap();
    assert!(s.next_message().unwrap().is_none());
    let overflow = s.pop_notification().unwrap().unwrap_err();
    assert_eq!(overflow.notifications_dropped(), Some(1));
    assert_eq!(s.pop_notification().unwrap().unwrap().payload, "1");
}

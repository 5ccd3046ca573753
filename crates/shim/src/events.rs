//! Task events, sent back to containerd.
//!
//! containerd 1.5 and later give a shim the address of their ttrpc socket in `$TTRPC_ADDRESS`;
//! the shim calls `containerd.services.events.ttrpc.v1.Events/Forward` there with an **envelope**
//! (namespace, topic such as `/tasks/exit`, timestamp, and the event as a `google.protobuf.Any`
//! whose type URL is the bare message name, `containerd.events.TaskExit`, as Go's `typeurl`
//! writes it). The older contract, running `-publish-binary` as `containerd publish --topic …
//! --namespace …` with the event on stdin, is what containerd 1.6's own runc shim no longer
//! does, and neither does this one.
//!
//! Events are queued and sent in order by one thread, so `/tasks/exit` never overtakes the
//! `/tasks/start` of the same process; a failed send is retried (reconnecting) a few times.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::EventsClient;

/// An event message with its topic and type URL.
pub trait TaskEvent: Message {
    const TOPIC: &'static str;
    const TYPE_URL: &'static str;
}

macro_rules! task_events {
    ($($ty:ident => $topic:literal),* $(,)?) => {$(
        impl TaskEvent for $ty {
            const TOPIC: &'static str = $topic;
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($ty));
        }
    )*};
}

task_events! {
    TaskCreate => "/tasks/create",
    TaskStart => "/tasks/start",
    TaskDelete => "/tasks/delete",
    TaskExit => "/tasks/exit",
    TaskOOM => "/tasks/oom",
    TaskExecAdded => "/tasks/exec-added",
    TaskExecStarted => "/tasks/exec-started",
    TaskPaused => "/tasks/paused",
    TaskResumed => "/tasks/resumed",
}

/// A `google.protobuf.Any` as Go's `typeurl` writes it: the type URL is the message name.
pub fn any<M: Message>(type_url: &str, msg: &M) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: msg.write_to_bytes().unwrap_or_default(),
        ..Default::default()
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: SystemTime) -> MessageField<Timestamp> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    MessageField::some(Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    })
}

/// Sends events to containerd from a background thread.
#[derive(Debug)]
pub struct Publisher {
    tx: Mutex<Option<Sender<Envelope>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    namespace: String,
}

impl Publisher {
    /// A publisher to containerd's ttrpc socket `address` (a path, as in `$TTRPC_ADDRESS`), or
    /// one that drops events when `address` is empty.
    pub fn start(address: &str, namespace: &str) -> Publisher {
        let (tx, rx) = mpsc::channel();
        let address = address.to_string();
        let thread = thread::Builder::new()
            .name("publisher".into())
            .spawn(move || forward_all(&address, rx))
            .ok();
        Publisher {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            namespace: namespace.to_string(),
        }
    }

    /// Queue `event` for containerd.
    pub fn publish<E: TaskEvent>(&self, event: E) {
        let envelope = Envelope {
            timestamp: timestamp(SystemTime::now()),
            namespace: self.namespace.clone(),
            topic: E::TOPIC.to_string(),
            event: MessageField::some(any(E::TYPE_URL, &event)),
            ..Default::default()
        };
        log::debug!("publish {}", E::TOPIC);
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(envelope);
        }
    }

    /// Stop accepting events and wait (at most `timeout`) for the queued ones to be sent.
    pub fn close(&self, timeout: Duration) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let deadline = Instant::now() + timeout;
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn forward_all(address: &str, rx: Receiver<Envelope>) {
    let mut client: Option<EventsClient> = None;
    for envelope in rx {
        if address.is_empty() {
            continue;
        }
        let req = ForwardRequest {
            envelope: MessageField::some(envelope),
            ..Default::default()
        };
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            let c = match client.take() {
                Some(c) => c,
                None => match ttrpc::Client::connect(&format!("unix://{address}")) {
                    Ok(c) => EventsClient::new(c),
                    Err(err) => {
                        log::warn!("connect to containerd at {address}: {err:?}");
                        thread::sleep(delay);
                        delay *= 2;
                        continue;
                    }
                },
            };
            let ctx = ttrpc::context::with_duration(Duration::from_secs(5));
            match c.forward(ctx, &req) {
                Ok(_) => {
                    client = Some(c);
                    break;
                }
                Err(ttrpc::Error::RpcStatus(status)) => {
                    // containerd answered: retrying would get the same answer.
                    let topic = req.envelope.topic.as_str();
                    log::warn!("containerd refused event {topic}: {}", status.message());
                    client = Some(c);
                    break;
                }
                Err(err) => {
                    let topic = req.envelope.topic.as_str();
                    log::warn!("forward event {topic} (attempt {attempt}): {err:?}");
                    thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
    }
}

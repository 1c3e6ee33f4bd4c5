#![doc = include_str!("rabbitmq.md")]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::sync::Notify;

use crate::{JobQueue, LeasedJob, QueueError, RetryOutcome, TranscodeJob, backoff};

/// Header holding the attempt a delivery is (1 on the first).
pub const ATTEMPT_HEADER: &str = "x-mediahost-attempt";
/// Header holding the last attempt's error on a retried or dead-lettered job.
pub const ERROR_HEADER: &str = "x-mediahost-error";
/// The main queue's `x-max-priority`: broker priorities are 0..=9.
pub const MAX_PRIORITY: u8 = 9;

/// Longest error kept in [`ERROR_HEADER`]; headers travel in one frame.
const MAX_ERROR_BYTES: usize = 4096;
/// How long connecting (TCP, TLS, AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connect, calls fail at once with that error for this long instead of each
/// trying again.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long an idle retry queue outlives its TTL before the broker deletes it.
const RETRY_QUEUE_GRACE: Duration = Duration::from_secs(60);

/// The broker priority (0..=[`MAX_PRIORITY`]) of a job priority: [`MAX_PRIORITY`] for jobs
/// still to be routed ([`crate::ROUTING_PRIORITY`]), so every transcode ranks below routing;
/// else normal (0) is 4 and the distance from normal counts in powers of two, both ways:
/// 1 → 5, 2..=3 → 6, 4..=7 → 7, 8 and above → 8 (-1 → 3, …, -8 and below → 0). The broker has
/// ten levels, so the order of job priorities is kept exactly near normal and in bands further
/// out (a router ranking clips 5 and 10 gets them apart); the embedded queue orders by the
/// exact value.
pub fn broker_priority(priority: i32) -> u8 {
    if priority == crate::ROUTING_PRIORITY {
        return MAX_PRIORITY;
    }
    // The bit length of the distance from normal, at most 4: 0, 1, 2..=3, 4..=7, 8.. .
    let band = (32 - priority.unsigned_abs().leading_zeros()).min(4) as i32;
    // In 0..=8, so the cast is exact.
    (4 + priority.signum() * band) as u8
}

/// How to reach and use the broker.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// `amqp://user:password@host:5672/%2f` (or `amqps://`).
    pub url: String,
    /// The main queue; `<name>.dead` and `<name>.retry.<ms>` are derived from it.
    pub name: String,
    /// Deliveries the broker sends ahead of acknowledgements (`basic.qos`).
    pub prefetch: u16,
    /// Attempts before a failing job is dead-lettered.
    pub max_attempts: u32,
    /// Delay before a failed job's next attempt: [`backoff`] unless a test shortens it.
    pub backoff: fn(u32) -> Duration,
}

impl RabbitOptions {
    /// Options for the queue `name` at `url`, with a prefetch of 1, 3 attempts and [`backoff`].
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            prefetch: 1,
            max_attempts: 3,
            backoff,
        }
    }
}

/// A job queue on RabbitMQ; see the [module docs](self).
///
/// Dropping it stops its consumer and closes its connection, so the broker requeues whatever
/// it still held.
#[derive(Debug)]
pub struct RabbitQueue {
    /// What the consumer task shares.
    inner: Arc<Inner>,
    /// The consumer task, started by the first `lease` or `wait` (a process that only enqueues
    /// never takes jobs) and stopped when the queue is dropped.
    consumer: OnceLock<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    options: RabbitOptions,
    /// The broker URL without its password, for messages.
    shown_url: String,
    /// `<name>.dead`.
    dead: String,
    /// The connection and its publishing channel, replaced when the connection drops.
    link: tokio::sync::Mutex<Link>,
    /// Deliveries received and not yet leased, oldest first, each with its consumer's tag.
    ready: Mutex<VecDeque<(Arc<str>, Delivery)>>,
    /// Leased deliveries by lease token, until settled.
    held: Mutex<HashMap<String, Delivery>>,
    /// Wakes `wait` when a delivery arrives.
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Link {
    /// The live connection, if any.
    session: Option<Arc<Session>>,
    /// The last failed connect: when, and why (given back until [`CONNECT_RETRY_PAUSE`] passed).
    failed: Option<(Instant, String, lapin::Error)>,
}

#[derive(Debug)]
struct Session {
    /// Carries both channels; shared by the consumer's channel.
    connection: Arc<Connection>,
    /// Publishes with confirms; declares queues.
    publish: Channel,
}

impl RabbitQueue {
    /// Connects to the broker and declares the main and dead-letter queues. Fails when the
    /// broker cannot be reached, refuses the credentials or virtual host, or holds a queue of
    /// that name with other arguments; the error names `queue.amqp_url` or `queue.name`.
    pub async fn connect(options: RabbitOptions) -> Result<Self, QueueError> {
        let name = options.name.trim();
        // Queue names are AMQP short strings (255 bytes) and the longest derived one is
        // `<name>.retry.<ms>`.
        if name.is_empty() || name.len() > 200 {
            return Err(QueueError::Config(format!(
                "queue.name {name:?} must be 1 to 200 bytes long"
            )));
        }
        let options = RabbitOptions {
            name: name.to_owned(),
            max_attempts: options.max_attempts.max(1),
            prefetch: options.prefetch.max(1),
            ..options
        };
        let inner = Inner {
            shown_url: mediahost_core::redact_url(&options.url),
            dead: format!("{}.dead", options.name),
            options,
            link: tokio::sync::Mutex::default(),
            ready: Mutex::default(),
            held: Mutex::default(),
            arrived: Notify::new(),
        };
        inner.session().await?;
        Ok(Self {
            inner: Arc::new(inner),
            consumer: OnceLock::new(),
        })
    }

    /// The main queue's name.
    pub fn name(&self) -> &str {
        &self.inner.options.name
    }

    /// The dead-letter queue's name (`<name>.dead`).
    pub fn dead_letter_queue(&self) -> &str {
        &self.inner.dead
    }

    /// The retry queue holding jobs that wait out `delay` (`<name>.retry.<ms>`).
    pub fn retry_queue(&self, delay: Duration) -> String {
        self.inner.retry_queue(delay)
    }

    fn start_consumer(&self) {
        self.consumer
            .get_or_init(|| tokio::spawn(consume(self.inner.clone())));
    }

    /// Takes the delivery of a lease out of the held ones; gone or on a closed channel means
    /// the broker has taken it back.
    fn take(&self, job: &LeasedJob) -> Result<Delivery, QueueError> {
        let delivery = lock(&self.inner.held).remove(&job.lease_token);
        match delivery {
            Some(d) if d.acker.usable() => Ok(d),
            _ => Err(QueueError::LeaseLost(job.id)),
        }
    }
}

impl Drop for RabbitQueue {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.get() {
            consumer.abort();
        }
    }
}

/// Poisoning only means another thread panicked mid-update of a buffer; its contents are
/// still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.options.name, delay.as_millis())
    }

    fn amqp(&self, context: impl Into<String>, cause: lapin::Error) -> QueueError {
        QueueError::Amqp {
            context: context.into(),
            cause,
        }
    }

    /// The live session, connecting (and declaring the queues) when there is none.
    async fn session(&self) -> Result<Arc<Session>, QueueError> {
        let mut link = self.link.lock().await;
        if let Some(session) = link.session.clone() {
            if session.connection.status().connected() {
                if session.publish.status().connected() {
                    return Ok(session);
                }
                // A channel error closed the publishing channel; the connection, and the
                // consumer's deliveries on it, live on.
                let publish = self.publish_channel(&session.connection).await?;
                let session = Arc::new(Session {
                    connection: session.connection.clone(),
                    publish,
                });
                link.session = Some(session.clone());
                return Ok(session);
            }
            link.session = None;
        }
        if let Some((at, context, cause)) = &link.failed
            && at.elapsed() < CONNECT_RETRY_PAUSE
        {
            return Err(self.amqp(context.clone(), cause.clone()));
        }
        match self.open().await {
            Ok(session) => {
                let session = Arc::new(session);
                link.session = Some(session.clone());
                link.failed = None;
                Ok(session)
            }
            Err(QueueError::Amqp { context, cause }) => {
                link.failed = Some((Instant::now(), context.clone(), cause.clone()));
                Err(QueueError::Amqp { context, cause })
            }
            Err(e) => Err(e),
        }
    }

    async fn open(&self) -> Result<Session, QueueError> {
        let unreachable = || {
            format!(
                "cannot connect to RabbitMQ at {} (queue.amqp_url)",
                self.shown_url
            )
        };
        let properties = ConnectionProperties::default().with_connection_name(
            format!(
                "mediahost {} (pid {})",
                self.options.name,
                std::process::id()
            )
            .into(),
        );
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(&self.options.url, properties),
        )
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )
            .into())
        })
        .map_err(|e| self.amqp(unreachable(), e))?;
        let connection = Arc::new(connection);
        let publish = self.publish_channel(&connection).await?;
        self.declare_main(&publish).await?;
        publish
            .queue_declare(
                self.dead.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.declare_error(&self.dead, e))?;
        tracing::info!(broker = %self.shown_url, queue = %self.options.name, "job queue on RabbitMQ");
        Ok(Session {
            connection,
            publish,
        })
    }

    async fn publish_channel(&self, connection: &Connection) -> Result<Channel, QueueError> {
        let channel = connection.create_channel().await.map_err(|e| {
            self.amqp(
                format!("RabbitMQ at {}: cannot open a channel", self.shown_url),
                e,
            )
        })?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| {
                self.amqp(
                    format!(
                        "RabbitMQ at {}: cannot turn on publisher confirms",
                        self.shown_url
                    ),
                    e,
                )
            })?;
        Ok(channel)
    }

    async fn declare_main(&self, channel: &Channel) -> Result<(), QueueError> {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-priority".into(),
            AMQPValue::ShortShortUInt(MAX_PRIORITY),
        );
        channel
            .queue_declare(
                self.options.name.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .map_err(|e| self.declare_error(&self.options.name, e))?;
        Ok(())
    }

    fn declare_error(&self, queue: &str, cause: lapin::Error) -> QueueError {
        let context = if is_soft(&cause, AMQPSoftError::PRECONDITIONFAILED) {
            format!(
                "RabbitMQ at {} holds a queue {queue} declared with other arguments than \
                 mediahost's (durable; the main queue with x-max-priority {MAX_PRIORITY}): delete \
                 it or choose another queue.name",
                self.shown_url
            )
        } else if is_soft(&cause, AMQPSoftError::ACCESSREFUSED) {
            format!(
                "the RabbitMQ user of queue.amqp_url ({}) may not declare queue {queue}: grant \
                 it configure, write and read permissions on the virtual host",
                self.shown_url
            )
        } else {
            format!(
                "RabbitMQ at {}: cannot declare queue {queue}",
                self.shown_url
            )
        };
        self.amqp(context, cause)
    }

    /// Publishes through the default exchange and waits for the broker's confirm.
    async fn publish(
        &self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), QueueError> {
        let session = self.session().await?;
        let failed = |e| {
            self.amqp(
                format!(
                    "RabbitMQ at {}: cannot publish to queue {queue}",
                    self.shown_url
                ),
                e,
            )
        };
        let confirm = session
            .publish
            .basic_publish(
                ShortString::default(),
                queue.into(),
                // Mandatory: a message for a queue that does not exist comes back.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                properties,
            )
            .await
            .map_err(failed)?
            .await
            .map_err(failed)?;
        let reason = match confirm {
            Confirmation::Ack(None) => return Ok(()),
            Confirmation::Ack(Some(returned)) => format!(
                "returned unroutable ({} {}): the queue does not exist",
                returned.reply_code, returned.reply_text
            ),
            Confirmation::Nack(_) => "negative publisher confirm (see the broker's log, e.g. a \
                                      disk or memory alarm)"
                .to_owned(),
            Confirmation::NotRequested => "publisher confirms are off on this channel".to_owned(),
        };
        Err(QueueError::NotConfirmed {
            queue: queue.to_owned(),
            reason,
        })
    }

    /// Declares the retry queue of `delay` (again: that also keeps it from expiring).
    async fn declare_retry_queue(&self, delay: Duration) -> Result<String, QueueError> {
        let queue = self.retry_queue(delay);
        let ttl = delay.as_millis().min(u128::from(u32::MAX / 4)) as i64;
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(2 * ttl + RETRY_QUEUE_GRACE.as_millis() as i64),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from("")),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.options.name.as_str().into()),
        );
        self.session()
            .await?
            .publish
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .map_err(|e| self.declare_error(&queue, e))?;
        Ok(queue)
    }

    /// Opens a consumer channel on the main queue with the prefetch limit.
    async fn open_consumer(&self) -> Result<(Channel, Consumer), QueueError> {
        let session = self.session().await?;
        let context = || {
            format!(
                "RabbitMQ at {}: cannot consume from queue {}",
                self.shown_url, self.options.name
            )
        };
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(|e| self.amqp(context(), e))?;
        channel
            .basic_qos(self.options.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| self.amqp(context(), e))?;
        // Declared again so a queue deleted under a running deployment comes back.
        self.declare_main(&channel).await?;
        let tag = format!("mediahost-{}", uuid::Uuid::now_v7().simple());
        let consumer = channel
            .basic_consume(
                self.options.name.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.amqp(context(), e))?;
        Ok((channel, consumer))
    }

    /// Drops deliveries whose channel has closed: the broker has requeued them.
    fn forget_closed(&self) {
        lock(&self.ready).retain(|(_, d)| d.acker.usable());
        lock(&self.held).retain(|_, d| d.acker.usable());
    }

    /// Acknowledges (or with `requeue`, hands back) a taken delivery.
    async fn settle(
        &self,
        job: &LeasedJob,
        delivery: &Delivery,
        requeue: Option<bool>,
    ) -> Result<(), QueueError> {
        let done = match requeue {
            None => delivery.acker.ack(Default::default()).await,
            Some(requeue) => {
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        match done {
            Ok(true) => Ok(()),
            // The channel closed meanwhile: the broker requeued the delivery.
            Ok(false) => Err(QueueError::LeaseLost(job.id)),
            Err(e) => Err(self.amqp(
                format!(
                    "RabbitMQ at {}: cannot settle job {} (it goes back to the queue when the \
                     channel closes)",
                    self.shown_url, job.id
                ),
                e,
            )),
        }
    }

    /// Moves an unreadable delivery to the dead-letter queue (it can never succeed).
    async fn bury(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError> {
        let properties = with_headers(
            &delivery.properties,
            attempt_of(&delivery.properties),
            Some(error),
        );
        if let Err(e) = self.publish(&self.dead, &delivery.data, properties).await {
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            return Err(e);
        }
        let _ = delivery.acker.ack(Default::default()).await;
        Ok(())
    }
}

/// Receives deliveries into the ready buffer for the life of the queue, reconnecting with
/// backoff whenever the channel or connection goes.
async fn consume(inner: Arc<Inner>) {
    let queue = inner.options.name.clone();
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        match inner.open_consumer().await {
            Ok((channel, mut consumer)) => {
                let tag: Arc<str> = consumer.tag().as_str().into();
                tracing::info!(%queue, prefetch = inner.options.prefetch, "consuming jobs from RabbitMQ");
                let reason = loop {
                    match consumer.next().await {
                        Some(Ok(delivery)) => {
                            lock(&inner.ready).push_back((tag.clone(), delivery));
                            inner.arrived.notify_waiters();
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => {
                            break "the broker cancelled the consumer (was the queue deleted?)"
                                .to_owned();
                        }
                    }
                };
                drop(channel);
                inner.forget_closed();
                tracing::warn!(
                    %queue,
                    broker = %inner.shown_url,
                    %reason,
                    "RabbitMQ consumer stopped; the jobs this process held go back to the queue \
                     for any worker; reconnecting"
                );
                if started.elapsed() > Duration::from_secs(60) {
                    failures = 0;
                }
            }
            Err(e) => {
                tracing::error!(%queue, error = %e, "cannot consume jobs from RabbitMQ; retrying")
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(reconnect_pause(failures)).await;
    }
}

/// 0.5 s, 1 s, 2 s … capped at 30 s.
fn reconnect_pause(failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_millis(ms.min(30_000))
}

fn is_soft(error: &lapin::Error, kind: AMQPSoftError) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(kind))
}

/// The attempt a delivery is, from [`ATTEMPT_HEADER`] (any integer type); 1 when absent.
fn attempt_of(properties: &BasicProperties) -> u32 {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned());
    let n: Option<i64> = match value {
        Some(AMQPValue::LongLongInt(n)) => Some(n),
        Some(AMQPValue::LongInt(n)) => Some(n.into()),
        Some(AMQPValue::LongUInt(n)) => Some(n.into()),
        Some(AMQPValue::ShortInt(n)) => Some(n.into()),
        Some(AMQPValue::ShortUInt(n)) => Some(n.into()),
        Some(AMQPValue::ShortShortInt(n)) => Some(n.into()),
        Some(AMQPValue::ShortShortUInt(n)) => Some(n.into()),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(1).max(1)
}

/// `properties` with the attempt header set to `attempt` and, when given, the error header;
/// other headers are kept except the broker's own dead-lettering history.
fn with_headers(
    properties: &BasicProperties,
    attempt: u32,
    error: Option<&str>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    let mut kept: FieldTable = headers
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-death")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into();
    kept.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(attempt.into()),
    );
    if let Some(error) = error {
        kept.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(error[..error.floor_char_boundary(MAX_ERROR_BYTES)].into()),
        );
    }
    headers = kept;
    properties.clone().with_headers(headers)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl JobQueue for RabbitQueue {
    async fn enqueue(&self, job: &TranscodeJob, priority: i32) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(job).expect("TranscodeJob serializes");
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(broker_priority(priority))
            .with_content_type("application/json".into())
            .with_message_id(uuid::Uuid::now_v7().to_string().into())
            .with_timestamp(now_secs());
        let properties = with_headers(&properties, 1, None);
        self.inner
            .publish(&self.inner.options.name, &payload, properties)
            .await
    }

    async fn lease(&self) -> Result<Option<LeasedJob>, QueueError> {
        self.start_consumer();
        loop {
            let Some((tag, delivery)) = lock(&self.inner.ready).pop_front() else {
                return Ok(None);
            };
            if !delivery.acker.usable() {
                continue; // its channel closed: the broker has requeued it
            }
            // Delivery tags count from 1 per channel and stay far below i64::MAX.
            let id = delivery.delivery_tag as i64;
            let job = match serde_json::from_slice(&delivery.data) {
                Ok(job) => job,
                Err(e) => {
                    let message = e.to_string();
                    self.inner
                        .bury(&delivery, &format!("unreadable job payload: {message}"))
                        .await?;
                    return Err(QueueError::BadPayload { id, message });
                }
            };
            let lease_token = format!("{tag}/{}", delivery.delivery_tag);
            let attempt = attempt_of(&delivery.properties);
            lock(&self.inner.held).insert(lease_token.clone(), delivery);
            return Ok(Some(LeasedJob {
                id,
                job,
                attempt,
                max_attempts: self.inner.options.max_attempts,
                lease_token,
            }));
        }
    }

    async fn renew(&self, job: &LeasedJob) -> Result<(), QueueError> {
        // Nothing to tell the broker: the delivery stays ours while its channel lives.
        match lock(&self.inner.held).get(&job.lease_token) {
            Some(d) if d.acker.usable() => Ok(()),
            _ => Err(QueueError::LeaseLost(job.id)),
        }
    }

    async fn complete(&self, job: &LeasedJob) -> Result<(), QueueError> {
        let delivery = self.take(job)?;
        self.inner.settle(job, &delivery, None).await
    }

    async fn retry(&self, job: &LeasedJob, error: &str) -> Result<RetryOutcome, QueueError> {
        let delivery = self.take(job)?;
        let attempt = attempt_of(&delivery.properties);
        let (queue, properties, outcome) = if attempt >= self.inner.options.max_attempts {
            let properties = with_headers(&delivery.properties, attempt, Some(error));
            (
                self.inner.dead.clone(),
                properties,
                RetryOutcome::DeadLettered,
            )
        } else {
            let delay = (self.inner.options.backoff)(attempt);
            let queue = match self.inner.declare_retry_queue(delay).await {
                Ok(queue) => queue,
                Err(e) => {
                    // Back to the queue unchanged rather than stuck unacknowledged here.
                    let _ = self.inner.settle(job, &delivery, Some(true)).await;
                    return Err(e);
                }
            };
            let properties = with_headers(&delivery.properties, attempt + 1, Some(error));
            (queue, properties, RetryOutcome::Retrying(delay))
        };
        if let Err(e) = self.inner.publish(&queue, &delivery.data, properties).await {
            let _ = self.inner.settle(job, &delivery, Some(true)).await;
            return Err(e);
        }
        self.inner.settle(job, &delivery, None).await?;
        Ok(outcome)
    }

    async fn release(&self, job: &LeasedJob) -> Result<(), QueueError> {
        let delivery = self.take(job)?;
        // Requeued as it is: the attempt header, and so the attempt count, stay unchanged.
        self.inner.settle(job, &delivery, Some(true)).await
    }

    async fn wait(&self, idle: Duration) {
        self.start_consumer();
        let arrived = self.inner.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if !lock(&self.inner.ready).is_empty() {
            return;
        }
        let _ = tokio::time::timeout(idle, arrived).await;
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let session = self.inner.session().await?;
        let queue = session
            .publish
            .queue_declare(
                self.inner.options.name.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.inner.declare_error(&self.inner.options.name, e))?;
        // The broker counts only what it has not sent; deliveries parked here (up to
        // `prefetch`) wait for a worker of this process just the same.
        let parked = lock(&self.inner.ready).len() as u64;
        Ok(u64::from(queue.message_count()) + parked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_around_normal_into_0_to_9() {
        let cases = [
            (0, 4),
            (1, 5),
            (2, 6),
            (3, 6),
            (4, 7),
            (5, 7),
            (7, 7),
            (8, 8),
            (10, 8),
            (i32::MAX - 1, 8),
            (-1, 3),
            (-3, 2),
            (-5, 1),
            (-8, 0),
            (i32::MIN, 0),
            (crate::ROUTING_PRIORITY, 9),
        ];
        for (priority, broker) in cases {
            assert_eq!(broker_priority(priority), broker, "{priority}");
        }
    }

    #[test]
    fn the_attempt_header_is_read_from_any_integer_and_defaults_to_1() {
        let props = |v: AMQPValue| {
            let mut h = FieldTable::default();
            h.insert(ATTEMPT_HEADER.into(), v);
            BasicProperties::default().with_headers(h)
        };
        assert_eq!(attempt_of(&BasicProperties::default()), 1);
        assert_eq!(attempt_of(&props(AMQPValue::LongLongInt(3))), 3);
        assert_eq!(attempt_of(&props(AMQPValue::ShortShortUInt(2))), 2);
        assert_eq!(attempt_of(&props(AMQPValue::LongString("x".into()))), 1);
        assert_eq!(attempt_of(&props(AMQPValue::LongLongInt(-5))), 1);
    }

    #[test]
    fn republished_headers_keep_ours_drop_x_death_and_cut_long_errors() {
        let mut h = FieldTable::default();
        h.insert("x-death".into(), AMQPValue::LongLongInt(1));
        h.insert("x-other".into(), AMQPValue::LongLongInt(7));
        let original = BasicProperties::default().with_priority(6).with_headers(h);
        let error = "é".repeat(MAX_ERROR_BYTES);
        let props = with_headers(&original, 3, Some(&error));
        let headers = props.headers().clone().unwrap();
        let headers = headers.inner();
        assert_eq!(attempt_of(&props), 3);
        assert_eq!(props.priority(), &Some(6));
        assert!(!headers.contains_key("x-death"));
        assert_eq!(headers.get("x-other"), Some(&AMQPValue::LongLongInt(7)));
        let Some(AMQPValue::LongString(kept)) = headers.get(ERROR_HEADER) else {
            panic!("no error header");
        };
        assert!(kept.as_bytes().len() <= MAX_ERROR_BYTES);
        assert!(std::str::from_utf8(kept.as_bytes()).is_ok());
    }

    #[test]
    fn reconnect_pauses_double_then_cap() {
        assert_eq!(reconnect_pause(1), Duration::from_millis(500));
        assert_eq!(reconnect_pause(2), Duration::from_secs(1));
        assert_eq!(reconnect_pause(50), Duration::from_secs(30));
    }
}

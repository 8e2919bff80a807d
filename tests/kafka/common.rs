//! Shared helpers of the integration tests that need a real Kafka-protocol broker.
//!
//! `scripts/test.sh` starts one (tansu, see `scripts/kafka-broker.sh`) and passes its address
//! in `SPIKEWATCH_TEST_BROKERS`. Each test uses its own topics and group, so tests can share it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use spikewatch::config::Config;
use spikewatch::engine::Engine;
use spikewatch::event::{decode, AnomalyEvent, InputEvent, InputKind};
use spikewatch::sim::{self, Outage, Scenario, ServiceSpec, DAY_MS, HOUR_MS, MINUTE_MS};

pub(crate) const PARTITIONS: i32 = 4;

/// The broker address, or a panic that says how to get one. Never skips.
pub(crate) fn brokers() -> String {
    let b = std::env::var("SPIKEWATCH_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "SPIKEWATCH_TEST_BROKERS is not set: this test needs a running Kafka-protocol broker. \
             Run scripts/test.sh (it starts one), or `scripts/kafka-broker.sh start` and export \
             SPIKEWATCH_TEST_BROKERS=127.0.0.1:PORT"
        )
    });
    let addr = b.split(',').next().unwrap().to_string();
    if std::net::TcpStream::connect_timeout(
        &addr
            .parse()
            .expect("SPIKEWATCH_TEST_BROKERS must be HOST:PORT"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("no broker listening at SPIKEWATCH_TEST_BROKERS={b}: start it with scripts/kafka-broker.sh start");
    }
    b
}

/// Unique topic and group names for one test.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) prefix: String,
    pub(crate) mentions: String,
    pub(crate) complaints: String,
    /// The anomaly topic: outage events (schema version 2).
    pub(crate) outages: String,
    /// The series anomaly topic: per-series incident events (schema version 1).
    pub(crate) anomalies: String,
    pub(crate) dead_letters: String,
    pub(crate) changelog: String,
    pub(crate) group: String,
}

impl Names {
    pub(crate) fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("{test}-{}-{nanos}", std::process::id());
        Self {
            mentions: format!("{prefix}.mentions"),
            complaints: format!("{prefix}.complaints"),
            outages: format!("{prefix}.anomalies"),
            anomalies: format!("{prefix}.series-anomalies"),
            dead_letters: format!("{prefix}.dead-letters"),
            changelog: format!("{prefix}.state"),
            group: format!("{prefix}.group"),
            prefix,
        }
    }

    pub(crate) fn topic(&self, kind: InputKind) -> &str {
        match kind {
            InputKind::Mention => &self.mentions,
            InputKind::Complaint => &self.complaints,
        }
    }
}

pub(crate) fn create_topics(brokers: &str, n: &Names) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topics = [
        &n.mentions,
        &n.complaints,
        &n.outages,
        &n.anomalies,
        &n.dead_letters,
    ];
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let res = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .expect("create topics");
    for r in res {
        r.expect("topic created");
    }
}

/// Writes a config for a test run: fast group joins, short idle and drain timeouts.
pub(crate) fn write_config(dir: &Path, brokers: &str, n: &Names, extra: &str) -> PathBuf {
    let path = dir.join("spikewatch.toml");
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
session_timeout = "6s"
heartbeat_interval = "1s"
idle_timeout = "3s"
drain_timeout = "15s"
checkpoint_interval_ms = 100
summary_interval = "5s"
partitions = {PARTITIONS}
{extra}

[kafka.topics]
mentions = "{m}"
complaints = "{c}"
anomalies = "{o}"
series_anomalies = "{a}"
dead_letters = "{d}"
changelog = "{s}"
"#,
        group = n.group,
        m = n.mentions,
        c = n.complaints,
        o = n.outages,
        a = n.anomalies,
        d = n.dead_letters,
        s = n.changelog,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `spikewatch run`, its stderr captured to a file and its final counters written
/// to another (`--report`) at exit.
pub(crate) struct Instance {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) report: PathBuf,
}

impl Instance {
    pub(crate) fn start(config: &Path, log: PathBuf) -> Self {
        Self::start_with(config, log, &[])
    }

    /// [`Instance::start`] with more arguments for `spikewatch run`.
    pub(crate) fn start_with(config: &Path, log: PathBuf, extra: &[&std::ffi::OsStr]) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let report = log.with_extension("report.json");
        let child = Command::new(env!("CARGO_BIN_EXE_spikewatch"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--report")
            .arg(&report)
            .args(extra)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start spikewatch run");
        Self { child, log, report }
    }

    /// The final counters (`spikewatch run --report`), once the instance has exited cleanly.
    pub(crate) fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.report)
            .unwrap_or_else(|e| panic!("no report ({e}); log:\n{}", self.log_text()));
        serde_json::from_str(&text).expect("report JSON")
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no {needle:?} in the log within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit; panics with the log after `timeout`.
    pub(crate) fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "spikewatch did not exit within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One input message.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) kind: InputKind,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
}

/// A small, fast scenario: four services over Italian cities from Monday 09:00 local time
/// (flat daytime traffic), 5 hours, with Telegram down in Rome and Milan from 3 h to 3 h 30.
pub(crate) fn scenario() -> (Scenario, i64, i64) {
    let start = sim::DEMO_START_MS + 8 * HOUR_MS;
    let onset = start + 3 * HOUR_MS;
    let end = onset + 30 * MINUTE_MS;
    let p = sim::presence;
    let services = ["telegram", "spotify", "google", "libero-mail"]
        .into_iter()
        .map(|name| ServiceSpec {
            name,
            presence: vec![p("IT-RM", 6.0, 4.0), p("IT-MI", 7.0, 4.5)],
        })
        .collect();
    let s = Scenario {
        start_ms: start,
        days: 1,
        seed: 7,
        bucket_ms: MINUTE_MS,
        services,
        outages: vec![Outage {
            label: "Telegram down in Rome and Milan",
            service: "telegram",
            geos: vec![("IT-RM", onset, end), ("IT-MI", onset, end)],
            complaints_factor: 10.0,
            mentions_factor: 10.0,
        }],
        realism: Default::default(),
    };
    (s, onset, end)
}

pub(crate) const SCENARIO_HOURS: i64 = 5;

/// The scenario's wire messages in time order (keyed by service).
pub(crate) fn scenario_messages() -> Vec<Msg> {
    let (s, _, _) = scenario();
    messages_of(&s, s.start_ms + SCENARIO_HOURS * HOUR_MS, 11, |_| true)
}

/// The wire messages (keyed by service) of `s` before `stop_ms`, in time order, of the input
/// kinds `keep` accepts; `seed` places mentions within their buckets.
pub(crate) fn messages_of(
    s: &Scenario,
    stop_ms: i64,
    seed: u64,
    keep: impl Fn(InputKind) -> bool,
) -> Vec<Msg> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    s.generate(|t, service, geo, signal, count| {
        if t >= stop_ms {
            return;
        }
        for ev in sim::expand_events(&mut rng, t, s.bucket_ms, service, geo, signal, count) {
            let (kind, payload) = match &ev {
                InputEvent::Mention(m) => (InputKind::Mention, serde_json::to_vec(m).unwrap()),
                InputEvent::Complaint(c) => (InputKind::Complaint, serde_json::to_vec(c).unwrap()),
            };
            if keep(kind) {
                out.push(Msg {
                    kind,
                    key: service.to_string(),
                    payload,
                });
            }
        }
    });
    out
}

/// What the engine alone makes of `msgs` (watermark = newest event time, as the pipeline's).
pub(crate) fn oracle(msgs: &[Msg]) -> Vec<AnomalyEvent> {
    let mut e = Engine::new(Config::default());
    let mut out = Vec::new();
    let mut newest = i64::MIN;
    for m in msgs {
        let ev = decode(m.kind, &m.payload).unwrap();
        newest = newest.max(ev.ts().millis());
        e.observe_event(&ev).unwrap();
        e.advance(newest, &mut out);
    }
    out
}

pub(crate) fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap()
}

/// Produces `msgs` to their topics (keyed by service) and waits for every acknowledgement.
pub(crate) fn produce(brokers: &str, n: &Names, msgs: &[Msg]) {
    let p = producer(brokers);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut futs = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut rec = FutureRecord::to(n.topic(m.kind))
                .key(m.key.as_bytes())
                .payload(&m.payload);
            // Enqueue without waiting; only a full local queue waits.
            loop {
                match p.send_result(rec) {
                    Ok(f) => break futs.push(f),
                    Err((_, r)) => {
                        rec = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
        for f in futs {
            f.await
                .expect("producer alive")
                .expect("produce acknowledged");
        }
    });
    p.flush(Duration::from_secs(10)).unwrap();
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: BTreeMap<String, String>,
}

/// Key of the end marker [`read_all`] writes.
const END_OF_READ: &[u8] = b"\0end-of-read";

/// Every record of a topic, once its writers are done: an end marker is produced to each
/// partition and the topic is read until every one of those markers is back. Completeness depends neither on
/// how fast the broker answers (a fixed read time does: on a loaded machine 5 s once read one
/// partition of four) nor on its listed high watermarks (tansu 0.6 lists one past the first
/// offset of the last record batch). A panic names the partitions still short after two minutes.
pub(crate) fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Where this call's markers landed: a marker of an earlier call (the same topic read again
    // while its writers go on) is no end, records may follow it.
    let marks: Vec<i64> = rt.block_on(async {
        let mut marks = Vec::new();
        for part in 0..PARTITIONS {
            let d = p
                .send(
                    FutureRecord::to(topic)
                        .partition(part)
                        .key(END_OF_READ)
                        .payload("{}"),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("end marker to {topic}/{part}: {e}"));
            marks.push(d.offset);
        }
        marks
    });
    // (records looked at, partitions whose marker came back): each record is looked at once.
    let seen = std::cell::RefCell::new((0usize, vec![false; PARTITIONS as usize]));
    let complete = |r: &[Record]| {
        let mut seen = seen.borrow_mut();
        let (n, ended) = &mut *seen;
        for x in &r[*n..] {
            if x.key.as_deref() == Some(END_OF_READ) && x.offset >= marks[x.partition as usize] {
                ended[x.partition as usize] = true;
            }
        }
        *n = r.len();
        ended.iter().all(|&e| e)
    };
    let out = read_topic(brokers, topic, Duration::from_secs(120), complete);
    assert!(
        complete(&out),
        "{topic}: end markers of partitions {:?} not read back in 120 s ({} records)",
        seen.borrow().1,
        out.len()
    );
    out.into_iter()
        .filter(|r| r.key.as_deref() != Some(END_OF_READ))
        .collect()
}

/// Reads a topic from the beginning until `done(records)` or `timeout`.
pub(crate) fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "20000000")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < timeout && !done(&out) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for i in 0..h.count() {
                    let hh = h.get(i);
                    headers.insert(
                        hh.key.to_string(),
                        String::from_utf8_lossy(hh.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}

pub(crate) fn anomalies(records: &[Record]) -> Vec<AnomalyEvent> {
    records
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("anomaly event JSON"))
        .collect()
}

/// Outage events (schema version 2), de-duplicated by `(outage_id, seq)` as a subscriber
/// would: (id, seq) → (state, end of the newest bucket it accounts for).
pub(crate) fn outages(
    records: &[Record],
) -> BTreeMap<(String, u64), (spikewatch::event::IncidentState, String)> {
    records
        .iter()
        .map(|r| {
            let e: spikewatch::event::OutageEvent =
                serde_json::from_slice(&r.payload).expect("outage event JSON");
            ((e.outage_id, e.seq), (e.state, e.as_of.to_rfc3339()))
        })
        .collect()
}

/// De-duplicated `(incident_id, seq)` set, as a subscriber sees it.
pub(crate) fn dedup(events: &[AnomalyEvent]) -> BTreeMap<(String, u64), AnomalyEvent> {
    events
        .iter()
        .map(|e| ((e.incident_id.clone(), e.seq), e.clone()))
        .collect()
}

/// Committed offsets of `group` on the input topics: (topic, partition) → offset.
pub(crate) fn committed(brokers: &str, n: &Names) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &n.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in [&n.mentions, &n.complaints] {
        for p in 0..PARTITIONS {
            tpl.add_partition(t, p);
        }
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Appends `text` to a config file.
pub(crate) fn append_config(path: &Path, text: &str) {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push_str(text);
    write_file(path, &all);
}

/// Makes the instance of a config serve HTTP on a free port; returns the port.
pub(crate) fn serve_http(config: &Path) -> u16 {
    let port = free_port();
    append_config(config, &format!("\n[http]\naddr = \"127.0.0.1:{port}\"\n"));
    port
}

/// The event time of an input message.
pub(crate) fn event_ms(m: &Msg) -> i64 {
    decode(m.kind, &m.payload).unwrap().ts().millis()
}

pub(crate) fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub(crate) fn write_file(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Produces one far-ahead "marker" message to every partition of both input topics so every
/// partition's watermark passes all earlier messages; returns each marker's offset: once the
/// committed offsets reach them, every earlier message has been processed and acknowledged.
pub(crate) fn produce_markers(
    brokers: &str,
    n: &Names,
    ts_ms: i64,
) -> BTreeMap<(String, i32), i64> {
    let p = producer(brokers);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = BTreeMap::new();
    rt.block_on(async {
        for kind in [InputKind::Mention, InputKind::Complaint] {
            for part in 0..PARTITIONS {
                let payload = match kind {
                    InputKind::Mention => {
                        format!(r#"{{"ts":{ts_ms},"service":"zz-marker-{part}","geo":"IT"}}"#)
                    }
                    InputKind::Complaint => format!(
                        r#"{{"ts":{ts_ms},"service":"zz-marker-{part}","geo":"IT","count":1}}"#
                    ),
                };
                let rec = FutureRecord::to(n.topic(kind))
                    .partition(part)
                    .key("marker")
                    .payload(&payload);
                let d = p
                    .send(rec, Duration::from_secs(30))
                    .await
                    .expect("marker produced");
                out.insert((n.topic(kind).to_string(), part), d.offset);
            }
        }
    });
    out
}

/// Waits until the group's committed offsets reach `target` on every input partition.
pub(crate) fn wait_committed(
    brokers: &str,
    n: &Names,
    target: &BTreeMap<(String, i32), i64>,
    timeout: Duration,
    logs: &[&Instance],
) {
    let t0 = Instant::now();
    let mut last = BTreeMap::new();
    while t0.elapsed() < timeout {
        last = committed(brokers, n);
        if target
            .iter()
            .all(|(k, v)| last.get(k).is_some_and(|c| c >= v))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let logs: Vec<String> = logs.iter().map(|i| i.log_text()).collect();
    panic!(
        "committed offsets did not reach {target:?} within {timeout:?}; last {last:?}\n{}",
        logs.join("\n-----\n")
    );
}

/// `GET path` over plain HTTP/1.1; returns (status line, body).
pub(crate) fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of one sample (`name` or `name{labels}`) in Prometheus text.
pub(crate) fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The chaos scenario: two weeks of complaint counts for two services in three geos, with two known outages:
/// Telegram down in Rome and Milan for 3 hours on day 9, the mail service down in Italy for
/// 20 hours from day 12.
pub(crate) fn weeks_scenario() -> (Scenario, [(&'static str, i64); 2]) {
    let start = sim::DEMO_START_MS;
    let p = sim::presence;
    let telegram = start + 9 * DAY_MS + 10 * HOUR_MS;
    let mail = start + 12 * DAY_MS + 8 * HOUR_MS;
    let s = Scenario {
        start_ms: start,
        days: 15,
        seed: 21,
        bucket_ms: MINUTE_MS,
        services: ["telegram", "libero-mail"]
            .into_iter()
            .map(|name| ServiceSpec {
                name,
                presence: vec![
                    p("IT-RM", 0.0, 6.0),
                    p("IT-MI", 0.0, 5.0),
                    p("DE", 0.0, 4.0),
                ],
            })
            .collect(),
        outages: vec![
            Outage {
                label: "Telegram down in Rome and Milan",
                service: "telegram",
                geos: vec![
                    ("IT-RM", telegram, telegram + 3 * HOUR_MS),
                    ("IT-MI", telegram, telegram + 3 * HOUR_MS),
                ],
                complaints_factor: 12.0,
                mentions_factor: 1.0,
            },
            Outage {
                label: "Mail down in Italy",
                service: "libero-mail",
                geos: vec![
                    ("IT-RM", mail, mail + 20 * HOUR_MS),
                    ("IT-MI", mail, mail + 20 * HOUR_MS),
                ],
                complaints_factor: 10.0,
                mentions_factor: 1.0,
            },
        ],
        realism: Default::default(),
    };
    (s, [("telegram", telegram), ("libero-mail", mail)])
}

//! `redact`: personal health information out of telemetry, as a second line of defence
//! (DOMAIN.md, Privacy: the code already logs patient uuids, never names or contacts).
//!
//! Two rules, applied to every attribute (resource, scope, span, span event, span link, log
//! record, metric data point, exemplar), to log bodies (strings, and strings nested in arrays
//! and maps), to span status messages and to profile labels:
//!
//! - **Keys**: an attribute whose key names personal data (`patient.name`, `email`, `phone`,
//!   `mrn`, `date_of_birth`, `dob`, ... plus the configured ones) has its whole value, of any
//!   type, replaced with `[REDACTED:kind]`. A key matches case-insensitively, as the whole key
//!   or as its last part after a `.`, `_` or `-` (`user.email`, `patient_phone`).
//! - **Patterns**: inside string values, matches of the built-in patterns and the configured
//!   ones are replaced with `[REDACTED:kind]`:
//!   - `email`: `jane.doe@example.org`;
//!   - `mrn`: `MR-` and 6 to 10 letters or digits (`MR-AB12CD34`, any case), and labelled
//!     numbers (`MRN: 123456`, `mrn#A-1234`, `medical record number 98765`);
//!   - `dob`: labelled dates of birth (`DOB: 12 March 1990`, `born on 03/12/1990`), and bare
//!     calendar dates `1990-03-12`, `12/03/1990`, `12.03.1990`;
//!   - `phone`: `+` then 7 to 15 digits with or without separators (`+44 20 7946 0958`,
//!     `+4915112345678`), or 7 to 15 digits in groups separated by dashes, dots, spaces or
//!     parentheses (`(555) 123-4567`, `555.123.4567`, `020 7946 0958`).
//!
//! Span names and metric names are kept: they are written in the code, not filled from
//! data. Span event names go through the patterns: `tracing` bridges name an event after its
//! formatted message.
//!
//! **Dates against timestamps.** A calendar date alone is redacted, as it may be a date of
//! birth. A date with a time of day (`2026-11-29T15:32:00Z`, `2026-11-29 15:32:00`) is an
//! RFC 3339 timestamp, the time something happened: logs are full of them, they are needed to
//! debug, and nobody's birth is recorded to the second in telemetry. They are kept. A date of
//! birth written as a timestamp is still caught when labelled (`dob=`) or under a personal key.
//!
//! **Numbers that are not phone numbers.** Durations, ports, sizes and ids are plain digit
//! runs (`took 1500 ms`, `:4317`, `id 123456789`) and never match: a national number needs at
//! least one separator and 7 digits. Also kept: IPv4 addresses, decimals (`12.3456789`),
//! dates and times (`2026-11-29 15:32`), and space-separated digit groups that do not start
//! with a trunk `0` (`1024 768 32`; `020 7946 0958` is redacted). Some ids written in digit
//! groups (`2026-0001-0042`) are redacted: this is the safe side to err on.
//!
//! Fast path: all patterns are compiled once into a [`RegexSet`]; a string that matches none
//! (nearly all of them) is scanned once and left untouched, without an allocation.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, Metric};
use regex::{Regex, RegexSet};

use super::Transform;
use crate::batch::Batch;
use crate::config::RedactConfig;

/// What a redacted value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhiKind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A medical record number.
    Mrn,
    /// A date of birth (or a bare calendar date).
    DateOfBirth,
    /// A person's name (found by key only).
    Name,
    /// A configured pattern or key.
    Custom,
}

impl PhiKind {
    /// Every kind, in a fixed order.
    pub const ALL: [PhiKind; 6] = [
        PhiKind::Email,
        PhiKind::Phone,
        PhiKind::Mrn,
        PhiKind::DateOfBirth,
        PhiKind::Name,
        PhiKind::Custom,
    ];

    /// Its short name, as in the replacement and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PhiKind::Email => "email",
            PhiKind::Phone => "phone",
            PhiKind::Mrn => "mrn",
            PhiKind::DateOfBirth => "dob",
            PhiKind::Name => "name",
            PhiKind::Custom => "custom",
        }
    }

    /// What a redacted value becomes: `[REDACTED:email]`.
    pub fn replacement(self) -> &'static str {
        match self {
            PhiKind::Email => "[REDACTED:email]",
            PhiKind::Phone => "[REDACTED:phone]",
            PhiKind::Mrn => "[REDACTED:mrn]",
            PhiKind::DateOfBirth => "[REDACTED:dob]",
            PhiKind::Name => "[REDACTED:name]",
            PhiKind::Custom => "[REDACTED:custom]",
        }
    }
}

/// Redactions made, per kind, since the transform was built. Shared: read it from a metrics
/// exporter while the transform runs.
#[derive(Debug, Default)]
pub struct RedactCounters {
    /// Emails.
    pub email: AtomicU64,
    /// Phone numbers.
    pub phone: AtomicU64,
    /// Medical record numbers.
    pub mrn: AtomicU64,
    /// Dates of birth and bare dates.
    pub date_of_birth: AtomicU64,
    /// Names (values under a name key).
    pub name: AtomicU64,
    /// Configured patterns and keys.
    pub custom: AtomicU64,
}

impl RedactCounters {
    /// The counter of one kind.
    pub fn counter(&self, kind: PhiKind) -> &AtomicU64 {
        match kind {
            PhiKind::Email => &self.email,
            PhiKind::Phone => &self.phone,
            PhiKind::Mrn => &self.mrn,
            PhiKind::DateOfBirth => &self.date_of_birth,
            PhiKind::Name => &self.name,
            PhiKind::Custom => &self.custom,
        }
    }

    /// Redactions of one kind so far.
    pub fn get(&self, kind: PhiKind) -> u64 {
        self.counter(kind).load(Ordering::Relaxed)
    }

    /// Redactions of all kinds so far.
    pub fn total(&self) -> u64 {
        PhiKind::ALL.iter().map(|k| self.get(*k)).sum()
    }
}

/// Attribute keys whose whole value is personal data, with the kind each one is.
pub const DEFAULT_KEYS: &[(&str, PhiKind)] = &[
    ("patient.name", PhiKind::Name),
    ("patient_name", PhiKind::Name),
    ("first_name", PhiKind::Name),
    ("last_name", PhiKind::Name),
    ("full_name", PhiKind::Name),
    ("email", PhiKind::Email),
    ("email_address", PhiKind::Email),
    ("phone", PhiKind::Phone),
    ("phone_number", PhiKind::Phone),
    ("mrn", PhiKind::Mrn),
    ("medical_record_number", PhiKind::Mrn),
    ("date_of_birth", PhiKind::DateOfBirth),
    ("dob", PhiKind::DateOfBirth),
    ("birth_date", PhiKind::DateOfBirth),
    ("birthdate", PhiKind::DateOfBirth),
];

/// An ASCII word boundary: the Unicode one makes the fast DFA give up on non-ASCII text.
macro_rules! b {
    () => {
        r"(?-u:\b)"
    };
}

/// Built-in value patterns, in the order they are applied: labelled forms before bare ones,
/// dates before phone numbers (a date's digit groups look like a phone number).
const DEFAULT_PATTERNS: &[(PhiKind, Check, &str)] = &[
    (
        PhiKind::Email,
        Check::Always,
        // Unicode classes (`müller@beispiel.de`); no `\b`, so the fast DFA still applies.
        r"(?i)[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.\p{L}{2,}",
    ),
    (
        PhiKind::Mrn,
        Check::Always,
        concat!(r"(?i-u)", b!(), r"MR-[a-z0-9]{6,10}", b!()),
    ),
    (
        PhiKind::Mrn,
        Check::HasDigit,
        concat!(
            r"(?i-u)",
            b!(),
            r"(?:mrn|medical[ _-]+record[ _-]+(?:number|no\.?))",
            r"[ \t]*[:#=]?[ \t]*[a-z0-9][a-z0-9-]{3,19}",
            b!()
        ),
    ),
    (
        PhiKind::DateOfBirth,
        Check::Always,
        concat!(
            r"(?i-u)",
            b!(),
            r"(?:dob|d\.o\.b\.?|date[ _-]+of[ _-]+birth|birth[ _-]?date|born(?:[ \t]+on)?)[ \t]*[:=]?[ \t]*",
            r"(?:[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}",
            r"|[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}",
            r"|[0-9]{1,2}(?:st|nd|rd|th)?[ \t]+[a-z]{3,9}\.?,?[ \t]+[0-9]{4}",
            r"|[a-z]{3,9}\.?[ \t]+[0-9]{1,2}(?:st|nd|rd|th)?,?[ \t]+[0-9]{4})"
        ),
    ),
    (
        PhiKind::DateOfBirth,
        Check::NotTimestamp,
        concat!(
            r"(?-u)",
            b!(),
            r"(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])",
            b!()
        ),
    ),
    (
        PhiKind::DateOfBirth,
        Check::NotTimestamp,
        concat!(
            r"(?-u)",
            b!(),
            r"(?:0?[1-9]|[12][0-9]|3[01])[/.-](?:0?[1-9]|[12][0-9]|3[01])[/.-](?:19|20)[0-9]{2}",
            b!()
        ),
    ),
    (
        PhiKind::Phone,
        Check::Phone,
        r"(?-u)\+[0-9](?:[ .()-]{0,2}[0-9]){6,14}",
    ),
    (
        PhiKind::Phone,
        Check::Phone,
        concat!(
            r"(?-u)(?:\([0-9]{2,5}\)[ .-]?|",
            b!(),
            r"[0-9]{2,5}[ .-])[0-9]{2,8}(?:[ .-][0-9]{2,8}){0,4}",
            b!()
        ),
    ),
];

/// What a pattern's match must also satisfy to be redacted, beyond what a regex without
/// look-around can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every match.
    Always,
    /// The match holds a digit (`MRN lookup failed` is not a number).
    HasDigit,
    /// A date not followed by a time of day.
    NotTimestamp,
    /// A plausible phone number (see the module docs).
    Phone,
}

impl Check {
    fn accepts(self, haystack: &str, start: usize, end: usize) -> bool {
        let found = &haystack[start..end];
        let after = &haystack.as_bytes()[end..];
        match self {
            Check::Always => true,
            Check::HasDigit => found.bytes().any(|b| b.is_ascii_digit()),
            Check::NotTimestamp => !starts_with_time(after),
            Check::Phone => plausible_phone(found, after),
        }
    }
}

/// `T15:32`, ` 15:32`: the time part of a timestamp following its date.
fn starts_with_time(after: &[u8]) -> bool {
    match after {
        [b'T' | b't' | b' ' | b'_', h1, h2, b':', ..] => h1.is_ascii_digit() && h2.is_ascii_digit(),
        [b'T' | b't' | b' ' | b'_', h, b':', ..] => h.is_ascii_digit(),
        _ => false,
    }
}

fn plausible_phone(found: &str, after: &[u8]) -> bool {
    let digits = found.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    match after {
        // More digits follow: a longer number, not a phone.
        [d, ..] if d.is_ascii_digit() => return false,
        // `2026-11-29 15:32`: a date and an hour.
        [b':', d, ..] if d.is_ascii_digit() => return false,
        _ => {}
    }
    if found.starts_with('+') {
        return true;
    }
    let groups: Vec<&str> = found
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let separators = || {
        found
            .bytes()
            .filter(|b| !b.is_ascii_digit() && *b != b'(' && *b != b')')
    };
    let in_parentheses = found.starts_with('(');
    if !in_parentheses && separators().all(|b| b == b'.') {
        // 12.3456789 is a decimal; 192.168.10.20 an IPv4 address.
        if groups.len() == 2 || (groups.len() == 4 && groups.iter().all(|g| g.len() <= 3)) {
            return false;
        }
    }
    if !in_parentheses && separators().all(|b| b == b' ') && !found.starts_with('0') {
        // Space-separated national numbers start with the trunk 0 (020 7946 0958); other
        // space-separated digit groups are more likely values (1024 768 32).
        return false;
    }
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    // Dates: 1990-03-12, 12-03-1990.
    !matches!(lengths.as_slice(), [4, 1..=2, 1..=2] | [1..=2, 1..=2, 4])
}

/// A configured redact transform is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// A configured pattern does not compile.
    #[error("pattern '{pattern}' is not a valid regex: {reason}")]
    InvalidPattern {
        /// The pattern as configured.
        pattern: String,
        /// What the regex parser said.
        reason: String,
    },
    /// The patterns together are too large to compile.
    #[error("the patterns together do not compile: {0}")]
    TooLarge(String),
}

/// One value rule.
#[derive(Debug)]
struct Rule {
    kind: PhiKind,
    check: Check,
    regex: Regex,
}

/// The `redact` transform. See the module docs for what it redacts.
#[derive(Debug)]
pub struct Redact {
    /// Value rules, in application order; index `i` is pattern `i` of `set`.
    rules: Vec<Rule>,
    /// All rules at once, to skip strings that match none.
    set: RegexSet,
    /// Lower-cased keys and their kind.
    keys: Vec<(String, PhiKind)>,
    counters: Arc<RedactCounters>,
}

/// Redactions of one batch, added to the shared counters once.
#[derive(Default)]
struct Tally([u64; PhiKind::ALL.len()]);

impl Tally {
    fn add(&mut self, kind: PhiKind, n: u64) {
        let index = PhiKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("listed");
        self.0[index] += n;
    }
}

impl Redact {
    /// Compiles the patterns: the built-in ones unless `defaults = false`, then the
    /// configured ones.
    pub fn new(config: &RedactConfig) -> Result<Self, RedactError> {
        let mut rules = Vec::new();
        if config.defaults {
            for (kind, check, pattern) in DEFAULT_PATTERNS {
                let regex = Regex::new(pattern).expect("built-in patterns compile");
                rules.push(Rule {
                    kind: *kind,
                    check: *check,
                    regex,
                });
            }
        }
        for pattern in &config.patterns {
            let regex = Regex::new(pattern).map_err(|e| RedactError::InvalidPattern {
                pattern: pattern.clone(),
                reason: regex_reason(&e),
            })?;
            rules.push(Rule {
                kind: PhiKind::Custom,
                check: Check::Always,
                regex,
            });
        }
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str()))
            .map_err(|e| RedactError::TooLarge(regex_reason(&e)))?;

        let mut keys: Vec<(String, PhiKind)> = Vec::new();
        if config.defaults {
            keys.extend(
                DEFAULT_KEYS
                    .iter()
                    .map(|(k, kind)| ((*k).to_owned(), *kind)),
            );
        }
        keys.extend(
            config
                .keys
                .iter()
                .map(|k| (k.to_ascii_lowercase(), PhiKind::Custom)),
        );
        Ok(Self {
            rules,
            set,
            keys,
            counters: Arc::default(),
        })
    }

    /// The redaction counters, shared with the transform.
    pub fn counters(&self) -> Arc<RedactCounters> {
        Arc::clone(&self.counters)
    }

    /// `s` with what the patterns match replaced, or `None` when nothing matched (the usual
    /// case, decided by one pass of the regex set).
    pub fn redact_str(&self, s: &str) -> Option<String> {
        let mut tally = Tally::default();
        let redacted = self.redact_text(s, &mut tally);
        self.count(&tally);
        redacted
    }

    /// Redacts one batch in place.
    pub fn redact_batch(&self, batch: &mut Batch) {
        let mut tally = Tally::default();
        match batch {
            Batch::Logs(request) => {
                for resource_logs in &mut request.resource_logs {
                    if let Some(resource) = &mut resource_logs.resource {
                        self.redact_attributes(&mut resource.attributes, &mut tally);
                    }
                    for scope_logs in &mut resource_logs.scope_logs {
                        if let Some(scope) = &mut scope_logs.scope {
                            self.redact_attributes(&mut scope.attributes, &mut tally);
                        }
                        for record in &mut scope_logs.log_records {
                            if let Some(body) = &mut record.body {
                                self.redact_value(body, &mut tally);
                            }
                            self.redact_attributes(&mut record.attributes, &mut tally);
                        }
                    }
                }
            }
            Batch::Traces(request) => {
                for resource_spans in &mut request.resource_spans {
                    if let Some(resource) = &mut resource_spans.resource {
                        self.redact_attributes(&mut resource.attributes, &mut tally);
                    }
                    for scope_spans in &mut resource_spans.scope_spans {
                        if let Some(scope) = &mut scope_spans.scope {
                            self.redact_attributes(&mut scope.attributes, &mut tally);
                        }
                        for span in &mut scope_spans.spans {
                            self.redact_attributes(&mut span.attributes, &mut tally);
                            for event in &mut span.events {
                                // tracing-opentelemetry names an event after its formatted
                                // message, which may hold data.
                                if let Some(name) = self.redact_text(&event.name, &mut tally) {
                                    event.name = name;
                                }
                                self.redact_attributes(&mut event.attributes, &mut tally);
                            }
                            for link in &mut span.links {
                                self.redact_attributes(&mut link.attributes, &mut tally);
                            }
                            if let Some(status) = &mut span.status
                                && let Some(message) = self.redact_text(&status.message, &mut tally)
                            {
                                status.message = message;
                            }
                        }
                    }
                }
            }
            Batch::Metrics(request) => {
                for resource_metrics in &mut request.resource_metrics {
                    if let Some(resource) = &mut resource_metrics.resource {
                        self.redact_attributes(&mut resource.attributes, &mut tally);
                    }
                    for scope_metrics in &mut resource_metrics.scope_metrics {
                        if let Some(scope) = &mut scope_metrics.scope {
                            self.redact_attributes(&mut scope.attributes, &mut tally);
                        }
                        for metric in &mut scope_metrics.metrics {
                            self.redact_metric(metric, &mut tally);
                        }
                    }
                }
            }
            Batch::Profile(profile) => {
                for (key, value) in &mut profile.labels {
                    if let Some(kind) = self.key_kind(key) {
                        if !is_redacted(value) {
                            *value = kind.replacement().to_owned();
                            tally.add(kind, 1);
                        }
                    } else if let Some(redacted) = self.redact_text(value, &mut tally) {
                        *value = redacted;
                    }
                }
            }
        }
        self.count(&tally);
    }

    fn count(&self, tally: &Tally) {
        for (kind, n) in PhiKind::ALL.iter().zip(tally.0) {
            if n > 0 {
                self.counters.counter(*kind).fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn redact_metric(&self, metric: &mut Metric, tally: &mut Tally) {
        macro_rules! points {
            ($points:expr) => {
                for point in $points {
                    self.redact_attributes(&mut point.attributes, tally);
                    self.redact_exemplars(&mut point.exemplars, tally);
                }
            };
        }
        match &mut metric.data {
            Some(Data::Gauge(gauge)) => points!(&mut gauge.data_points),
            Some(Data::Sum(sum)) => points!(&mut sum.data_points),
            Some(Data::Histogram(histogram)) => points!(&mut histogram.data_points),
            Some(Data::ExponentialHistogram(histogram)) => points!(&mut histogram.data_points),
            Some(Data::Summary(summary)) => {
                for point in &mut summary.data_points {
                    self.redact_attributes(&mut point.attributes, tally);
                }
            }
            None => {}
        }
    }

    fn redact_exemplars(&self, exemplars: &mut [Exemplar], tally: &mut Tally) {
        for exemplar in exemplars {
            self.redact_attributes(&mut exemplar.filtered_attributes, tally);
        }
    }

    fn redact_attributes(&self, attributes: &mut [KeyValue], tally: &mut Tally) {
        for attribute in attributes {
            let Some(value) = &mut attribute.value else {
                continue;
            };
            match self.key_kind(&attribute.key) {
                Some(kind) => {
                    let already = matches!(&value.value, Some(any_value::Value::StringValue(s)) if is_redacted(s));
                    if value.value.is_some() && !already {
                        value.value =
                            Some(any_value::Value::StringValue(kind.replacement().to_owned()));
                        tally.add(kind, 1);
                    }
                }
                None => self.redact_value(value, tally),
            }
        }
    }

    fn redact_value(&self, value: &mut AnyValue, tally: &mut Tally) {
        match &mut value.value {
            Some(any_value::Value::StringValue(s)) => {
                if let Some(redacted) = self.redact_text(s, tally) {
                    *s = redacted;
                }
            }
            Some(any_value::Value::ArrayValue(array)) => {
                for item in &mut array.values {
                    self.redact_value(item, tally);
                }
            }
            Some(any_value::Value::KvlistValue(map)) => {
                self.redact_attributes(&mut map.values, tally)
            }
            _ => {}
        }
    }

    /// The kind of personal data a key names, if it names one.
    fn key_kind(&self, key: &str) -> Option<PhiKind> {
        self.keys
            .iter()
            .find(|(k, _)| key_matches(key, k))
            .map(|(_, kind)| *kind)
    }

    fn redact_text(&self, s: &str, tally: &mut Tally) -> Option<String> {
        let matched = self.set.matches(s);
        if !matched.matched_any() {
            return None;
        }
        let mut text = Cow::Borrowed(s);
        for index in matched.iter() {
            let rule = &self.rules[index];
            if let Some((replaced, n)) = replace(rule, &text) {
                tally.add(rule.kind, n);
                text = Cow::Owned(replaced);
            }
        }
        match text {
            Cow::Owned(redacted) => Some(redacted),
            Cow::Borrowed(_) => None,
        }
    }
}

/// Whether `key` (any case) is `listed` (lower case) or ends with `.listed`, `_listed` or
/// `-listed`.
fn key_matches(key: &str, listed: &str) -> bool {
    let Some(start) = key.len().checked_sub(listed.len()) else {
        return false;
    };
    if !key.is_char_boundary(start) || !key[start..].eq_ignore_ascii_case(listed) {
        return false;
    }
    start == 0 || matches!(key.as_bytes()[start - 1], b'.' | b'_' | b'-')
}

fn is_redacted(s: &str) -> bool {
    s.starts_with("[REDACTED:")
}

/// Replaces the accepted matches of `rule` in `haystack`; `None` when there are none.
fn replace(rule: &Rule, haystack: &str) -> Option<(String, u64)> {
    let mut out = String::new();
    let mut copied = 0;
    let mut n = 0;
    for found in rule.regex.find_iter(haystack) {
        if !rule.check.accepts(haystack, found.start(), found.end()) {
            continue;
        }
        out.push_str(&haystack[copied..found.start()]);
        out.push_str(rule.kind.replacement());
        copied = found.end();
        n += 1;
    }
    if n == 0 {
        return None;
    }
    out.push_str(&haystack[copied..]);
    Some((out, n))
}

/// The regex crate's error without its multi-line pattern excerpt: `unclosed group`.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.replace('\n', " "))
}

impl Transform for Redact {
    fn apply(&mut self, mut batch: Batch, _now: Instant) -> Vec<Batch> {
        self.redact_batch(&mut batch);
        vec![batch]
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    use super::*;
    use crate::batch::Profile;

    fn redact() -> Redact {
        Redact::new(&RedactConfig::default()).unwrap()
    }

    fn string(s: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        }
    }

    fn attribute(key: &str, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(value),
            ..Default::default()
        }
    }

    fn text(value: &Option<AnyValue>) -> &str {
        match value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// `s` after redaction (unchanged when nothing matched).
    fn scrub(redact: &Redact, s: &str) -> String {
        redact.redact_str(s).unwrap_or_else(|| s.to_owned())
    }

    #[test]
    fn emails_are_redacted() {
        let r = redact();
        assert_eq!(
            scrub(&r, "sent to jane.doe+ivf@clinic.example.org ok"),
            "sent to [REDACTED:email] ok"
        );
        assert_eq!(
            scrub(&r, "a@b.co,c@d.io"),
            "[REDACTED:email],[REDACTED:email]"
        );
        assert_eq!(r.counters().get(PhiKind::Email), 3);
    }

    #[test]
    fn phone_numbers_in_international_and_national_forms_are_redacted() {
        let r = redact();
        for phone in [
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "+33 6 12 34 56 78",
            "+4915112345678",
            "+1-555-123-4567",
            "555-123-4567",
            "(555) 123-4567",
            "(555)123-4567",
            "555.123.4567",
            "020 7946 0958",
            "06 12 34 56 78",
            "030 12345678",
        ] {
            assert_eq!(
                scrub(&r, &format!("call {phone} now")),
                "call [REDACTED:phone] now",
                "{phone}"
            );
        }
        assert_eq!(r.counters().get(PhiKind::Phone), 12);
    }

    #[test]
    fn ordinary_numbers_are_not_phone_numbers() {
        let r = redact();
        for kept in [
            "took 1500 ms",
            "listening on 0.0.0.0:4317",
            "connect 127.0.0.1:5432",
            "peer 192.168.10.20:8080",
            "job id 123456789",
            "bytes=10485760",
            "latency 12.3456789 s",
            "resolution 1024 768 32",
            "at 2026-11-29T15:32:00Z",
            "at 2026-11-29T15:32:00.123456789+01:00",
            "at 2026-11-29 15:32:00",
            "version 1.95.0",
            "trace 4bf92f3577b34da6a3ce929d0e0e4736",
            "traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "patient 0193a4e2-7c1d-7b3a-9f21-5d2c8e4b6a10",
            "unix 1732891920.123456",
            "MR-1234 is too short, MRN lookup failed",
        ] {
            assert_eq!(r.redact_str(kept), None, "{kept}");
        }
        assert_eq!(r.counters().total(), 0);
    }

    #[test]
    fn medical_record_numbers_are_redacted() {
        let r = redact();
        assert_eq!(
            scrub(&r, "record MR-AB12CD34 opened"),
            "record [REDACTED:mrn] opened"
        );
        assert_eq!(scrub(&r, "record mr-12345678"), "record [REDACTED:mrn]");
        assert_eq!(scrub(&r, "MRN: 123456"), "[REDACTED:mrn]");
        assert_eq!(scrub(&r, "mrn#A-12345, next"), "[REDACTED:mrn], next");
        assert_eq!(scrub(&r, "medical record number 98765"), "[REDACTED:mrn]");
        assert_eq!(r.counters().get(PhiKind::Mrn), 5);
    }

    #[test]
    fn dates_of_birth_and_bare_dates_are_redacted_timestamps_kept() {
        let r = redact();
        assert_eq!(scrub(&r, "born 1990-03-12"), "[REDACTED:dob]");
        assert_eq!(scrub(&r, "DOB: 12 March 1990, ok"), "[REDACTED:dob], ok");
        assert_eq!(
            scrub(&r, "date of birth = March 12th, 1990"),
            "[REDACTED:dob]"
        );
        assert_eq!(scrub(&r, "dob=03/12/1990"), "[REDACTED:dob]");
        assert_eq!(
            scrub(&r, "first visit 1990-03-12."),
            "first visit [REDACTED:dob]."
        );
        assert_eq!(
            scrub(&r, "seen 12/03/1990 and 31.12.2001"),
            "seen [REDACTED:dob] and [REDACTED:dob]"
        );
        assert_eq!(
            scrub(&r, "at 2026-11-29T15:32:00Z, on 2026-11-29"),
            "at 2026-11-29T15:32:00Z, on [REDACTED:dob]"
        );
        assert_eq!(scrub(&r, "29/11/2026 15:32"), "29/11/2026 15:32");
        assert_eq!(r.counters().get(PhiKind::DateOfBirth), 8);
    }

    #[test]
    fn personal_keys_lose_their_whole_value() {
        let r = redact();
        let mut attributes = vec![
            attribute("patient.name", string("Jane Doe")),
            attribute("user.email", string("not even an email")),
            attribute(
                "Patient_Phone",
                AnyValue {
                    value: Some(any_value::Value::IntValue(5551234567)),
                },
            ),
            attribute("dob", string("[REDACTED:dob]")),
            attribute("service.name", string("fertivision-api")),
            attribute("iphone", string("kept")),
            attribute("patient.id", string("0193a4e2-7c1d-7b3a-9f21-5d2c8e4b6a10")),
        ];
        let mut tally = Tally::default();
        r.redact_attributes(&mut attributes, &mut tally);
        r.count(&tally);
        let values: Vec<&str> = attributes.iter().map(|a| text(&a.value)).collect();
        assert_eq!(
            values,
            [
                "[REDACTED:name]",
                "[REDACTED:email]",
                "[REDACTED:phone]",
                "[REDACTED:dob]",
                "fertivision-api",
                "kept",
                "0193a4e2-7c1d-7b3a-9f21-5d2c8e4b6a10"
            ]
        );
        // The already redacted `dob` is not counted twice.
        assert_eq!(r.counters().total(), 3);
    }

    #[test]
    fn log_bodies_nested_values_and_resources_are_redacted() {
        let mut r = redact();
        let body = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    attribute("message", string("mail jane@example.org")),
                    attribute(
                        "contact",
                        AnyValue {
                            value: Some(any_value::Value::KvlistValue(KeyValueList {
                                values: vec![attribute("email", string("x"))],
                            })),
                        },
                    ),
                    attribute(
                        "list",
                        AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![string("MRN: 123456"), string("fine")],
                            })),
                        },
                    ),
                ],
            })),
        };
        let batch = Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![attribute("host.owner", string("call +44 20 7946 0958"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            body: Some(body),
                            attributes: vec![attribute("note", string("born 1990-03-12"))],
                            ..Default::default()
                        },
                        LogRecord {
                            body: Some(string("plain jane@example.org")),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let Batch::Logs(request) = apply_one(&mut r, batch) else {
            panic!()
        };
        let resource = request.resource_logs[0].resource.as_ref().unwrap();
        assert_eq!(text(&resource.attributes[0].value), "call [REDACTED:phone]");
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        let Some(any_value::Value::KvlistValue(map)) = &records[0].body.as_ref().unwrap().value
        else {
            panic!()
        };
        assert_eq!(text(&map.values[0].value), "mail [REDACTED:email]");
        let Some(any_value::Value::KvlistValue(contact)) =
            &map.values[1].value.as_ref().unwrap().value
        else {
            panic!()
        };
        assert_eq!(text(&contact.values[0].value), "[REDACTED:email]");
        let Some(any_value::Value::ArrayValue(list)) = &map.values[2].value.as_ref().unwrap().value
        else {
            panic!()
        };
        assert_eq!(text(&Some(list.values[0].clone())), "[REDACTED:mrn]");
        assert_eq!(text(&Some(list.values[1].clone())), "fine");
        assert_eq!(text(&records[0].attributes[0].value), "[REDACTED:dob]");
        assert_eq!(text(&records[1].body), "plain [REDACTED:email]");
        assert_eq!(r.counters().total(), 6);
    }

    #[test]
    fn spans_events_and_status_are_redacted_span_names_kept() {
        let mut r = redact();
        let batch = Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "GET /patients/{id}".to_owned(),
                        attributes: vec![attribute(
                            "db.statement",
                            string("where email = 'a@b.org'"),
                        )],
                        events: vec![
                            Event {
                                name: "exception".to_owned(),
                                attributes: vec![attribute(
                                    "exception.message",
                                    string("no patient MR-AB12CD34"),
                                )],
                                ..Default::default()
                            },
                            Event {
                                name: "reminder sent to a@b.org".to_owned(),
                                ..Default::default()
                            },
                        ],
                        status: Some(Status {
                            message: "phone 555-123-4567 invalid".to_owned(),
                            code: 2,
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let Batch::Traces(request) = apply_one(&mut r, batch) else {
            panic!()
        };
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "GET /patients/{id}");
        assert_eq!(
            text(&span.attributes[0].value),
            "where email = '[REDACTED:email]'"
        );
        assert_eq!(span.events[0].name, "exception");
        assert_eq!(span.events[1].name, "reminder sent to [REDACTED:email]");
        assert_eq!(
            text(&span.events[0].attributes[0].value),
            "no patient [REDACTED:mrn]"
        );
        assert_eq!(
            span.status.as_ref().unwrap().message,
            "phone [REDACTED:phone] invalid"
        );
    }

    #[test]
    fn metric_label_values_are_redacted() {
        let mut r = redact();
        let batch = Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "fertivision_uploads".to_owned(),
                            data: Some(Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint {
                                    attributes: vec![attribute(
                                        "uploader",
                                        string("jane@example.org"),
                                    )],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "http.server.request.duration".to_owned(),
                            data: Some(Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    attributes: vec![
                                        attribute("mrn", string("MR-AB12CD34")),
                                        attribute("http.route", string("/patients/{id}")),
                                    ],
                                    ..Default::default()
                                }],
                                ..Default::default()
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let Batch::Metrics(request) = apply_one(&mut r, batch) else {
            panic!()
        };
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Gauge(gauge)) = &metrics[0].data else {
            panic!()
        };
        assert_eq!(
            text(&gauge.data_points[0].attributes[0].value),
            "[REDACTED:email]"
        );
        let Some(Data::Histogram(histogram)) = &metrics[1].data else {
            panic!()
        };
        assert_eq!(
            text(&histogram.data_points[0].attributes[0].value),
            "[REDACTED:mrn]"
        );
        assert_eq!(
            text(&histogram.data_points[0].attributes[1].value),
            "/patients/{id}"
        );
    }

    #[test]
    fn profile_labels_are_redacted() {
        let mut r = redact();
        let batch = Batch::Profile(Profile {
            service: "fertivision-api".to_owned(),
            labels: vec![
                ("email".to_owned(), "x".to_owned()),
                ("instance".to_owned(), "a".to_owned()),
                ("note".to_owned(), "jane@example.org".to_owned()),
            ],
            from: 0,
            until: 10,
            pprof: bytes::Bytes::new(),
        });
        let Batch::Profile(profile) = apply_one(&mut r, batch) else {
            panic!()
        };
        assert_eq!(profile.labels[0].1, "[REDACTED:email]");
        assert_eq!(profile.labels[1].1, "a");
        assert_eq!(profile.labels[2].1, "[REDACTED:email]");
    }

    #[test]
    fn configured_patterns_and_keys_are_custom() {
        let r = Redact::new(&RedactConfig {
            patterns: vec![r"(?i)\bpatient-[0-9]{4}\b".to_owned()],
            keys: vec!["Partner.Name".to_owned()],
            defaults: true,
        })
        .unwrap();
        assert_eq!(
            scrub(&r, "for PATIENT-0042 and a@b.org"),
            "for [REDACTED:custom] and [REDACTED:email]"
        );
        let mut attributes = vec![attribute("clinic.partner.name", string("John"))];
        let mut tally = Tally::default();
        r.redact_attributes(&mut attributes, &mut tally);
        r.count(&tally);
        assert_eq!(text(&attributes[0].value), "[REDACTED:custom]");
        assert_eq!(r.counters().get(PhiKind::Custom), 2);
        assert_eq!(r.counters().get(PhiKind::Email), 1);
    }

    #[test]
    fn defaults_can_be_turned_off() {
        let r = Redact::new(&RedactConfig {
            patterns: vec!["secret".to_owned()],
            keys: Vec::new(),
            defaults: false,
        })
        .unwrap();
        assert_eq!(scrub(&r, "a@b.org secret"), "a@b.org [REDACTED:custom]");
        let mut attributes = vec![attribute("email", string("a@b.org"))];
        r.redact_attributes(&mut attributes, &mut Tally::default());
        assert_eq!(text(&attributes[0].value), "a@b.org");
    }

    #[test]
    fn invalid_pattern_names_itself_and_the_reason() {
        let error = Redact::new(&RedactConfig {
            patterns: vec!["(unclosed".to_owned()],
            ..RedactConfig::default()
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "pattern '(unclosed' is not a valid regex: unclosed group"
        );
    }

    #[test]
    fn non_ascii_text_is_handled() {
        let r = redact();
        assert_eq!(
            scrub(&r, "Patientin: müller@beispiel.de"),
            "Patientin: [REDACTED:email]"
        );
        assert_eq!(r.redact_str("Größe 1500 mm, 東京"), None);
    }

    /// Applies through the `Transform` trait and unwraps the single batch.
    fn apply_one(redact: &mut Redact, batch: Batch) -> Batch {
        let mut out = redact.apply(batch, Instant::now());
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }
}

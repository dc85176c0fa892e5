//! Queries over the store: the profiles of a service in a time range merged into one
//! profile, rendered as collapsed stacks, a flamegraph SVG (inferno) or a gzip pprof.
//!
//! Merging re-interns everything: functions are the same when name, system name, file and
//! start line are; locations when their lines are (or, without lines, their address);
//! samples when their stacks are, and their values are summed. The sample types are those
//! of the first profile; a later profile's values are matched by type and unit, values of
//! other types are left out. Sample labels and mappings are not kept.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write as _};

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use super::pprof::{Function, Line, Location, Profile, Sample, ValueType};
use super::store::{ProfileStore, TimeRange};

/// A query that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No profile was ever stored for the service (or all expired).
    #[error("unknown service")]
    UnknownService,
    /// The sample type asked for is not in the profiles.
    #[error("unknown sample type '{0}'")]
    UnknownSampleType(String),
    /// The range holds no sample to draw.
    #[error("no samples in the time range")]
    NoSamples,
    /// The answer would exceed the response size cap.
    #[error("the response would exceed {limit} bytes; narrow the time range")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The store could not be read, or the flamegraph not drawn.
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// Profiles of a service in a range, merged.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedProfile {
    /// The merged profile.
    pub profile: Profile,
    /// How many stored profiles went into it.
    pub merged: usize,
    /// How many were left out: older ones past `max_profiles_per_query`, and unreadable ones.
    pub skipped: usize,
}

impl ProfileStore {
    /// Merges the profiles of `service` overlapping `range`, at most
    /// `max_profiles_per_query` of them (the newest). Blocking.
    pub fn merge(&self, service: &str, range: TimeRange) -> Result<MergedProfile, QueryError> {
        let found = self
            .list(service, range)?
            .ok_or(QueryError::UnknownService)?;
        let limit = self.config().max_profiles_per_query;
        let mut skipped = found.len().saturating_sub(limit);
        let mut merger = Merger::default();
        let mut merged = 0;
        for stored in &found[skipped..] {
            match self.read(stored) {
                Ok(profile) => {
                    merger.add(&profile);
                    merged += 1;
                }
                Err(error) => {
                    tracing::warn!(path = %stored.path.display(), %error, "stored profile skipped");
                    skipped += 1;
                }
            }
        }
        Ok(MergedProfile {
            profile: merger.finish(),
            merged,
            skipped,
        })
    }

    /// Collapsed stacks of the merged profiles (see [`collapsed_stacks`]), within the
    /// response cap.
    pub fn collapsed(
        &self,
        service: &str,
        range: TimeRange,
        sample_type: Option<&str>,
    ) -> Result<String, QueryError> {
        let merged = self.merge(service, range)?;
        let text = collapsed_stacks(&merged.profile, sample_type)?;
        self.within_cap(text.len())?;
        Ok(text)
    }

    /// A flamegraph SVG of the merged profiles, within the response cap.
    pub fn flamegraph(
        &self,
        service: &str,
        range: TimeRange,
        sample_type: Option<&str>,
    ) -> Result<Vec<u8>, QueryError> {
        let merged = self.merge(service, range)?;
        let collapsed = collapsed_stacks(&merged.profile, sample_type)?;
        if collapsed.is_empty() {
            return Err(QueryError::NoSamples);
        }
        let title = format!("{service} {}..{}", range.from, range.until);
        let svg = flamegraph_svg(&collapsed, &title)?;
        self.within_cap(svg.len())?;
        Ok(svg)
    }

    /// The merged profile, protobuf, gzip-compressed, within the response cap.
    pub fn merged_pprof_gz(&self, service: &str, range: TimeRange) -> Result<Vec<u8>, QueryError> {
        let merged = self.merge(service, range)?;
        self.within_cap(merged.profile.encoded_len())?;
        Ok(encode_gzip(&merged.profile))
    }

    fn within_cap(&self, len: usize) -> Result<(), QueryError> {
        let limit = self.config().max_response_bytes;
        if len > limit {
            return Err(QueryError::TooLarge { limit });
        }
        Ok(())
    }
}

/// The index of the sample type called `name`; without a name, the profile's default sample
/// type, else `cpu`, else `samples`, else the first.
pub fn sample_type_index(profile: &Profile, name: Option<&str>) -> Result<usize, QueryError> {
    let type_name = |t: &ValueType| profile.string(t.r#type);
    let position = |wanted: &str| {
        profile
            .sample_type
            .iter()
            .position(|t| type_name(t) == wanted)
    };
    match name {
        Some(name) => position(name).ok_or_else(|| QueryError::UnknownSampleType(name.to_owned())),
        None => Ok(profile
            .sample_type
            .iter()
            .position(|t| {
                profile.default_sample_type != 0 && t.r#type == profile.default_sample_type
            })
            .or_else(|| position("cpu"))
            .or_else(|| position("samples"))
            .unwrap_or(0)),
    }
}

/// Collapsed ("folded") stacks: one `root;caller;leaf value` line per distinct stack, the
/// values of the chosen sample type summed, stacks with a total of 0 or less left out,
/// sorted by stack. Frames are function names (inlined functions are frames of their own);
/// `;` and line breaks in a name become `_`; a location without a function is its address.
pub fn collapsed_stacks(
    profile: &Profile,
    sample_type: Option<&str>,
) -> Result<String, QueryError> {
    if profile.sample_type.is_empty() {
        return Ok(String::new());
    }
    let index = sample_type_index(profile, sample_type)?;
    let functions: HashMap<u64, &Function> = profile.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &Location> = profile.location.iter().map(|l| (l.id, l)).collect();
    let mut frames_of_location: HashMap<u64, String> = HashMap::new();
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for sample in &profile.sample {
        let value = sample.value.get(index).copied().unwrap_or(0);
        if value == 0 {
            continue;
        }
        let mut stack = String::new();
        for id in sample.location_id.iter().rev() {
            let frames = frames_of_location.entry(*id).or_insert_with(|| {
                location_frames(profile, &functions, locations.get(id).copied(), *id)
            });
            if !stack.is_empty() {
                stack.push(';');
            }
            stack.push_str(frames);
        }
        if stack.is_empty() {
            continue;
        }
        let total = stacks.entry(stack).or_insert(0);
        *total = total.saturating_add(value);
    }
    let mut text = String::new();
    for (stack, value) in stacks {
        if value > 0 {
            text.push_str(&stack);
            text.push(' ');
            text.push_str(&value.to_string());
            text.push('\n');
        }
    }
    Ok(text)
}

/// The frames of one location, root-most first, joined by `;`.
fn location_frames(
    profile: &Profile,
    functions: &HashMap<u64, &Function>,
    location: Option<&Location>,
    id: u64,
) -> String {
    let names: Vec<String> = location
        .map(|l| {
            l.line
                .iter()
                .rev()
                .filter_map(|line| functions.get(&line.function_id))
                .map(|f| {
                    let name = profile.string(f.name);
                    let name = if name.is_empty() {
                        profile.string(f.system_name)
                    } else {
                        name
                    };
                    name.replace([';', '\n', '\r'], "_")
                })
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        let address = location.map_or(id, |l| l.address);
        format!("0x{address:x}")
    } else {
        names.join(";")
    }
}

/// Draws collapsed stacks as a flamegraph SVG with inferno (deterministic colours).
pub fn flamegraph_svg(collapsed: &str, title: &str) -> io::Result<Vec<u8>> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.deterministic = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, collapsed.lines(), &mut svg)?;
    Ok(svg)
}

/// A profile as gzip-compressed protobuf, the form `go tool pprof` reads.
pub fn encode_gzip(profile: &Profile) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(&profile.encode_to_vec())
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Merges profiles into one (see the module documentation).
pub fn merge_profiles<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Profile {
    let mut merger = Merger::default();
    for profile in profiles {
        merger.add(profile);
    }
    merger.finish()
}

#[derive(Default)]
struct Merger {
    out: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64, i64, i64), u64>,
    locations: HashMap<(Vec<Line>, u64), u64>,
    samples: HashMap<Vec<u64>, usize>,
    end_nanos: i64,
}

impl Merger {
    fn intern(&mut self, s: &str) -> i64 {
        if self.out.string_table.is_empty() {
            self.out.string_table.push(String::new());
            self.strings.insert(String::new(), 0);
        }
        if let Some(index) = self.strings.get(s) {
            return *index;
        }
        let index = self.out.string_table.len() as i64;
        self.out.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), index);
        index
    }

    fn value_type(&mut self, profile: &Profile, t: &ValueType) -> ValueType {
        ValueType {
            r#type: self.intern(profile.string(t.r#type)),
            unit: self.intern(profile.string(t.unit)),
        }
    }

    fn add(&mut self, profile: &Profile) {
        if self.out.sample_type.is_empty() {
            self.out.sample_type = profile
                .sample_type
                .iter()
                .map(|t| self.value_type(profile, t))
                .collect();
            self.out.period_type = profile.period_type.map(|t| self.value_type(profile, &t));
            self.out.period = profile.period;
            if profile.default_sample_type != 0 {
                self.out.default_sample_type =
                    self.intern(profile.string(profile.default_sample_type));
            }
        }
        // Where each of this profile's values goes in the merged sample.
        let value_slots: Vec<Option<usize>> = profile
            .sample_type
            .iter()
            .map(|t| {
                let t = self.value_type(profile, t);
                self.out.sample_type.iter().position(|o| *o == t)
            })
            .collect();
        if profile.time_nanos > 0 {
            let end = profile
                .time_nanos
                .saturating_add(profile.duration_nanos.max(0));
            if self.out.time_nanos == 0 || profile.time_nanos < self.out.time_nanos {
                self.out.time_nanos = profile.time_nanos;
            }
            self.end_nanos = self.end_nanos.max(end);
            self.out.duration_nanos = self.end_nanos - self.out.time_nanos;
        }

        let functions: HashMap<u64, &Function> =
            profile.function.iter().map(|f| (f.id, f)).collect();
        let locations: HashMap<u64, &Location> =
            profile.location.iter().map(|l| (l.id, l)).collect();
        let mut location_ids: HashMap<u64, u64> = HashMap::new();
        for sample in &profile.sample {
            let stack: Vec<u64> = sample
                .location_id
                .iter()
                .map(|id| match location_ids.get(id) {
                    Some(new_id) => *new_id,
                    None => {
                        let new_id =
                            self.location(profile, &functions, locations.get(id).copied(), *id);
                        location_ids.insert(*id, new_id);
                        new_id
                    }
                })
                .collect();
            let types = self.out.sample_type.len();
            let index = *self.samples.entry(stack.clone()).or_insert_with(|| {
                self.out.sample.push(Sample {
                    location_id: stack,
                    value: vec![0; types],
                    label: Vec::new(),
                });
                self.out.sample.len() - 1
            });
            let merged = &mut self.out.sample[index].value;
            for (value, slot) in sample.value.iter().zip(&value_slots) {
                if let Some(slot) = slot {
                    merged[*slot] = merged[*slot].saturating_add(*value);
                }
            }
        }
    }

    fn location(
        &mut self,
        profile: &Profile,
        functions: &HashMap<u64, &Function>,
        location: Option<&Location>,
        id: u64,
    ) -> u64 {
        let mut lines = Vec::new();
        for line in location.map(|l| l.line.as_slice()).unwrap_or_default() {
            if let Some(function) = functions.get(&line.function_id) {
                lines.push(Line {
                    function_id: self.function(profile, function),
                    line: line.line,
                });
            }
        }
        // Without lines, the address tells locations apart (an unknown id: the id itself).
        let address = if lines.is_empty() {
            location.map_or(id, |l| l.address)
        } else {
            0
        };
        let next_id = self.out.location.len() as u64 + 1;
        let key = (lines, address);
        if let Some(existing) = self.locations.get(&key) {
            return *existing;
        }
        self.out.location.push(Location {
            id: next_id,
            mapping_id: 0,
            address,
            line: key.0.clone(),
        });
        self.locations.insert(key, next_id);
        next_id
    }

    fn function(&mut self, profile: &Profile, function: &Function) -> u64 {
        let key = (
            self.intern(profile.string(function.name)),
            self.intern(profile.string(function.system_name)),
            self.intern(profile.string(function.filename)),
            function.start_line,
        );
        if let Some(existing) = self.functions.get(&key) {
            return *existing;
        }
        let id = self.out.function.len() as u64 + 1;
        self.out.function.push(Function {
            id,
            name: key.0,
            system_name: key.1,
            filename: key.2,
            start_line: key.3,
        });
        self.functions.insert(key, id);
        id
    }

    fn finish(mut self) -> Profile {
        self.intern("");
        self.out
    }
}

//! The part of pprof's `profile.proto` the store reads and writes, as prost messages, and the
//! decoding of a pushed profile (gzip or not, bounded, checked).
//!
//! Fields not declared here (mappings, label sets of the merged output, comments, drop and
//! keep frames) are skipped when decoding and absent when encoding.

use std::io::Read as _;

use flate2::read::GzDecoder;
use prost::Message;

/// A profile: samples over a table of locations, functions and strings.
#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    /// What each of a sample's values measures, e.g. `samples/count`, `cpu/nanoseconds`.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Code locations; a sample refers to them by id.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions; a line refers to them by id.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string of the profile; entry 0 is always `""`. Other fields hold indexes.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// When the profile was taken, unix nanoseconds.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long it covers, nanoseconds.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What the sampling period counts.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The sampling period.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Index into `string_table` of the preferred sample type (0: none).
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A type and unit, both indexes into the string table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Message)]
pub struct ValueType {
    /// e.g. `cpu`.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// e.g. `nanoseconds`.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One stack with its values.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Location ids, the leaf (innermost call) first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per `Profile::sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels of the sample.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample label.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Key, a string index.
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value, a string index.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// Unit of the numeric value, a string index.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A code location: an address and the (possibly inlined) lines at it.
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The mapping it lies in (not kept by the store's merge).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Instruction address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Lines, the innermost inlined function first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// A source line in a function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Message)]
pub struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// A function.
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human-readable name, a string index.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Mangled name, a string index.
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file, a string index.
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

impl Profile {
    /// The string at `index`, `""` when out of range.
    pub fn string(&self, index: i64) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }
}

/// A pushed profile that is not a pprof profile.
#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    /// Bad gzip.
    #[error("gzip: {0}")]
    Gzip(std::io::Error),
    /// Larger than allowed once decompressed.
    #[error("profile larger than {limit} bytes once decompressed")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not protobuf of the expected shape.
    #[error("protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Protobuf, but not a valid profile.
    #[error("invalid profile: {0}")]
    Invalid(&'static str),
}

/// Whether `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses (when gzipped) at most `max_bytes`, decodes and checks a profile: string
/// entry 0 is `""`, every sample has one value per sample type, every id is non-zero.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Profile, PprofError> {
    let profile = if is_gzip(bytes) {
        let mut raw = Vec::new();
        GzDecoder::new(bytes)
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(PprofError::Gzip)?;
        if raw.len() > max_bytes {
            return Err(PprofError::TooLarge { limit: max_bytes });
        }
        Profile::decode(raw.as_slice())?
    } else {
        if bytes.len() > max_bytes {
            return Err(PprofError::TooLarge { limit: max_bytes });
        }
        Profile::decode(bytes)?
    };
    validate(&profile)?;
    Ok(profile)
}

fn validate(profile: &Profile) -> Result<(), PprofError> {
    if profile.string_table.first().map(String::as_str) != Some("") {
        return Err(PprofError::Invalid("string table does not start with \"\""));
    }
    if profile.sample_type.is_empty() {
        return Err(PprofError::Invalid("no sample type"));
    }
    let types = profile.sample_type.len();
    if profile.sample.iter().any(|s| s.value.len() != types) {
        return Err(PprofError::Invalid(
            "a sample's values do not match the sample types",
        ));
    }
    if profile.location.iter().any(|l| l.id == 0) || profile.function.iter().any(|f| f.id == 0) {
        return Err(PprofError::Invalid("a location or function id is 0"));
    }
    Ok(())
}

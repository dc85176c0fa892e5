//! Searches over a store's partitions, newest first.
//!
//! The query language is tantivy's: words (all must match: conjunction by default) in the
//! default fields (`body` for logs, `name` and `status_message` for spans), `field:value` on
//! any field or attribute (`service:api`, `attributes.http.route:"/v1/x"`), phrases in double
//! quotes, `AND`, `OR`, `NOT` / `-`, parentheses, and ranges (`severity_number:>=17`,
//! `duration_ms:[100 TO 250]`, `attributes.http.status_code:>=500`). The empty query and `*`
//! match everything. Time bounds and the cursor are separate parameters.
//!
//! Results are newest first, ordered by `(ts, seq)`; a page's cursor is the last hit's
//! `(ts, seq)` and the next page holds what sorts after it, so pages neither skip nor repeat
//! records while new ones arrive.

use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Schema};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{Document, Order, TantivyDocument, Term};

use crate::store::{IndexError, IndexStore, Partition};

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most hits one page returns.
pub const MAX_LIMIT: usize = 1000;
/// Most spans or records one trace lookup returns.
pub const MAX_TRACE_ITEMS: usize = 10_000;

/// A search that could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query does not parse or names what does not exist.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A parameter out of range.
    #[error("{0}")]
    InvalidParameter(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Where a page ends: the last hit's time and tie-break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `ts` of the last hit.
    pub ts: i64,
    /// `seq` of the last hit.
    pub seq: u64,
}

impl Cursor {
    /// `"<ts>.<seq>"`, opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.ts, self.seq)
    }

    /// The inverse of [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Cursor, SearchError> {
        let bad = || {
            SearchError::InvalidParameter(format!("cursor '{text}' is not one this API gave out"))
        };
        let (ts, seq) = text.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One search.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// The query text; empty matches everything.
    pub query: String,
    /// Records at or after this time (ns).
    pub start: Option<i64>,
    /// Records at or before this time (ns).
    pub end: Option<i64>,
    /// Hits per page (1 to [`MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this hit.
    pub cursor: Option<Cursor>,
}

/// One hit: the stored fields, each with its single value (or an array if it has several),
/// plus `time`, its `ts` in RFC 3339.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    /// Its time, ns (also in `fields` as `ts`).
    #[serde(skip)]
    pub ts: i64,
    /// Its tie-break, and its place in indexing order (a live tail resumes after it).
    pub seq: u64,
    /// Every stored field.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// A page of hits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchPage {
    /// Newest first.
    pub hits: Vec<Hit>,
    /// Records matching the query and time range, over every page.
    pub total: u64,
    /// The cursor of the next page, when there may be one.
    pub next_cursor: Option<String>,
}

/// Parses queries for one schema.
#[derive(Clone)]
pub struct Parser {
    parser: Arc<QueryParser>,
    schema: Schema,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parser")
    }
}

impl Parser {
    /// A parser whose bare words search `default_fields`.
    pub fn new(schema: &Schema, default_fields: Vec<Field>) -> Self {
        let mut parser =
            QueryParser::new(schema.clone(), default_fields, TokenizerManager::default());
        parser.set_conjunction_by_default();
        Self {
            parser: Arc::new(parser),
            schema: schema.clone(),
        }
    }

    /// Parses `text`; never panics (a panic inside the parser becomes an error).
    pub fn parse(&self, text: &str) -> Result<Box<dyn Query>, SearchError> {
        let text = text.trim();
        if text.len() > MAX_QUERY_BYTES {
            return Err(SearchError::InvalidQuery(format!(
                "the query is {} bytes; at most {MAX_QUERY_BYTES}",
                text.len()
            )));
        }
        if text.is_empty() || text == "*" {
            return Ok(Box::new(AllQuery));
        }
        let parser = Arc::clone(&self.parser);
        let owned = and_not_as_exclusion(text);
        let parsed = std::panic::catch_unwind(move || parser.parse_query(&owned));
        match parsed {
            Ok(Ok(query)) => Ok(query),
            Ok(Err(QueryParserError::FieldNotIndexed(name))) => {
                Err(SearchError::InvalidQuery(self.not_indexed(&name, text)))
            }
            Ok(Err(error)) => Err(SearchError::InvalidQuery(format!("{error} (in '{text}')"))),
            Err(_) => Err(SearchError::InvalidQuery(format!(
                "the query cannot be parsed (in '{text}')"
            ))),
        }
    }
}

impl Parser {
    /// What to tell a user who matched a single value of a field that has no terms.
    fn not_indexed(&self, name: &str, text: &str) -> String {
        let fast = self
            .schema
            .get_field(name)
            .is_ok_and(|field| self.schema.get_field_entry(field).is_fast());
        if fast {
            format!(
                "field '{name}' takes ranges, not single values: {name}:>=N or {name}:[A TO B] (in '{text}')"
            )
        } else {
            format!("field '{name}' is stored, not searchable (in '{text}')")
        }
    }
}

/// `a AND NOT b` as `a NOT b`. tantivy reads the former as "a, and a clause that only
/// excludes b", which matches nothing; everyone means "a without b". Quoted text is left alone.
pub fn and_not_as_exclusion(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        if i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        let words: Vec<&str> = part.split(' ').collect();
        let kept: Vec<&str> = words
            .iter()
            .enumerate()
            .filter(|(j, word)| !(**word == "AND" && words.get(j + 1) == Some(&"NOT")))
            .map(|(_, word)| *word)
            .collect();
        out.push_str(&kept.join(" "));
    }
    out
}

fn range_i64(field: Field, lower: Bound<i64>, upper: Bound<i64>) -> Box<dyn Query> {
    let term = |v: i64| Term::from_field_i64(field, v);
    Box::new(RangeQuery::new(lower.map(term), upper.map(term)))
}

/// A query matching what all of `queries` match; one query is returned as it is, so that its
/// own fast paths (a term's count is its document frequency) stay in use.
fn all_of(mut queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    if queries.len() == 1 {
        return queries.pop().expect("one query");
    }
    Box::new(BooleanQuery::new(
        queries.into_iter().map(|q| (Occur::Must, q)).collect(),
    ))
}

/// Everything that sorts after `cursor` (older, newest-first order).
fn after(ts: Field, seq: Field, cursor: Cursor) -> Box<dyn Query> {
    let older = range_i64(ts, Bound::Unbounded, Bound::Excluded(cursor.ts));
    let same_time = range_i64(ts, Bound::Included(cursor.ts), Bound::Included(cursor.ts));
    let smaller_seq = RangeQuery::new(
        Bound::Unbounded,
        Bound::Excluded(Term::from_field_u64(seq, cursor.seq)),
    );
    Box::new(BooleanQuery::new(vec![
        (Occur::Should, older),
        (
            Occur::Should,
            all_of(vec![same_time, Box::new(smaller_seq)]),
        ),
    ]))
}

/// The stored fields of a document as JSON, single values unwrapped.
pub fn stored_fields(schema: &Schema, doc: &TantivyDocument) -> Map<String, Value> {
    let named = doc.to_named_doc(schema);
    let value = serde_json::to_value(&named).unwrap_or(Value::Null);
    let Value::Object(map) = value else {
        return Map::new();
    };
    map.into_iter()
        .map(|(name, values)| {
            let value = match values {
                Value::Array(mut values) if values.len() == 1 => values.pop().expect("one"),
                other => other,
            };
            (name, value)
        })
        .collect()
}

fn hit(ts: i64, seq: u64, mut fields: Map<String, Value>) -> Hit {
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ts)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    fields.insert("time".to_owned(), Value::String(time));
    // `seq` is the struct's own field.
    fields.remove("seq");
    Hit { ts, seq, fields }
}

fn field(schema: &Schema, name: &str) -> Field {
    schema.get_field(name).expect("the schema has it")
}

fn tantivy(context: &str) -> impl FnOnce(tantivy::TantivyError) -> SearchError + '_ {
    move |source| {
        SearchError::Index(IndexError::Tantivy {
            context: context.to_owned(),
            source,
        })
    }
}

/// Runs `request` over the partitions of `store`, newest first.
pub fn search(
    store: &IndexStore,
    parser: &Parser,
    request: &SearchRequest,
) -> Result<SearchPage, SearchError> {
    if request.limit == 0 || request.limit > MAX_LIMIT {
        return Err(SearchError::InvalidParameter(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    if let (Some(start), Some(end)) = (request.start, request.end)
        && start > end
    {
        return Err(SearchError::InvalidParameter(
            "start is after end".to_owned(),
        ));
    }
    let schema = store.schema();
    let (ts, seq) = (field(schema, "ts"), field(schema, "seq"));
    let mut base = vec![parser.parse(&request.query)?];
    if request.start.is_some() || request.end.is_some() {
        base.push(range_i64(
            ts,
            request.start.map_or(Bound::Unbounded, Bound::Included),
            request.end.map_or(Bound::Unbounded, Bound::Included),
        ));
    }
    let counted = all_of(base.iter().map(|q| q.box_clone()).collect());
    let paged = match request.cursor {
        Some(cursor) => {
            let mut clauses = base;
            clauses.push(after(ts, seq, cursor));
            all_of(clauses)
        }
        None => all_of(base),
    };
    let mut hits = Vec::new();
    let mut total = 0u64;
    for partition in store.partitions_newest_first(request.start, request.end) {
        let searcher = partition.searcher();
        let wanted = request.limit - hits.len();
        if wanted == 0 {
            total += searcher
                .search(&*counted, &Count)
                .map_err(tantivy("count"))? as u64;
            continue;
        }
        // Counting is cheap (a term's count is its document frequency); sorting by the time
        // columns means opening them in every segment. When every match fits on the page, as
        // for a trace id, the matches are read and sorted without them.
        let matched = searcher.search(&*paged, &Count).map_err(tantivy("count"))?;
        total += match request.cursor {
            None => matched as u64,
            Some(_) => searcher
                .search(&*counted, &Count)
                .map_err(tantivy("count"))? as u64,
        };
        if matched == 0 {
            continue;
        }
        let mut found = Vec::new();
        if matched <= wanted {
            let addresses = searcher
                .search(&*paged, &DocSetCollector)
                .map_err(tantivy("search"))?;
            for address in addresses {
                found.push(fetch(&searcher, schema, address, None)?);
            }
            found.sort_by_key(|h| std::cmp::Reverse((h.ts, h.seq)));
        } else {
            let top = TopDocs::with_limit(wanted).order_by((
                (SortByStaticFastValue::<i64>::for_field("ts"), Order::Desc),
                (SortByStaticFastValue::<u64>::for_field("seq"), Order::Desc),
            ));
            for ((ts_value, seq_value), address) in
                searcher.search(&*paged, &top).map_err(tantivy("search"))?
            {
                found.push(fetch(
                    &searcher,
                    schema,
                    address,
                    Some((ts_value, seq_value)),
                )?);
            }
        }
        hits.extend(found);
    }
    let next_cursor = (hits.len() == request.limit)
        .then(|| {
            hits.last().map(|h| {
                Cursor {
                    ts: h.ts,
                    seq: h.seq,
                }
                .encode()
            })
        })
        .flatten();
    Ok(SearchPage {
        hits,
        total,
        next_cursor,
    })
}

/// Every document of `trace_id` (32 hex digits, any case), oldest first, at most
/// [`MAX_TRACE_ITEMS`].
pub fn by_trace(store: &IndexStore, trace_id: &str) -> Result<Vec<Hit>, SearchError> {
    let trace_id = trace_id.to_ascii_lowercase();
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SearchError::InvalidParameter(format!(
            "trace id '{trace_id}' is not 32 hex digits"
        )));
    }
    let schema = store.schema();
    let query = TermQuery::new(
        Term::from_field_text(field(schema, "trace_id"), &trace_id),
        IndexRecordOption::Basic,
    );
    let mut hits = Vec::new();
    for partition in store.partitions() {
        collect_oldest_first(&partition, schema, &query, &mut hits)?;
    }
    hits.sort_by_key(|h| (h.ts, h.seq));
    hits.truncate(MAX_TRACE_ITEMS);
    Ok(hits)
}

fn collect_oldest_first(
    partition: &Partition,
    schema: &Schema,
    query: &dyn Query,
    hits: &mut Vec<Hit>,
) -> Result<(), SearchError> {
    let searcher = partition.searcher();
    let top = TopDocs::with_limit(MAX_TRACE_ITEMS).order_by((
        (SortByStaticFastValue::<i64>::for_field("ts"), Order::Asc),
        (SortByStaticFastValue::<u64>::for_field("seq"), Order::Asc),
    ));
    for ((ts, seq), address) in searcher.search(query, &top).map_err(tantivy("trace"))? {
        hits.push(fetch(&searcher, schema, address, Some((ts, seq)))?);
    }
    Ok(())
}

/// The hit at `address`. `sort_key` is its `(ts, seq)` as a sorted collector read them from
/// the columns; without it they come from the stored fields.
fn fetch(
    searcher: &tantivy::Searcher,
    schema: &Schema,
    address: tantivy::DocAddress,
    sort_key: Option<(Option<i64>, Option<u64>)>,
) -> Result<Hit, SearchError> {
    let doc: TantivyDocument = searcher.doc(address).map_err(tantivy("fetch"))?;
    let fields = stored_fields(schema, &doc);
    let (ts, seq) = match sort_key {
        Some((ts, seq)) => (ts, seq),
        None => (
            fields.get("ts").and_then(Value::as_i64),
            fields.get("seq").and_then(Value::as_u64),
        ),
    };
    Ok(hit(ts.unwrap_or_default(), seq.unwrap_or_default(), fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_not_becomes_an_exclusion_outside_quotes() {
        assert_eq!(and_not_as_exclusion("a AND NOT b"), "a NOT b");
        assert_eq!(and_not_as_exclusion("a  AND NOT b OR c"), "a  NOT b OR c");
        assert_eq!(
            and_not_as_exclusion("\"x AND NOT y\" AND NOT z"),
            "\"x AND NOT y\" NOT z"
        );
        assert_eq!(and_not_as_exclusion("ANDNOT NOT"), "ANDNOT NOT");
    }
}

/// Most buckets one histogram returns.
pub const MAX_BUCKETS: i64 = 2000;

/// Counts per time interval, optionally per severity.
#[derive(Debug, Clone)]
pub struct HistogramRequest {
    /// The query text; empty matches everything.
    pub query: String,
    /// First bucket's start, ns.
    pub start: i64,
    /// The end of the range, ns (inclusive).
    pub end: i64,
    /// Bucket width, ns (at least 1 ms).
    pub interval: i64,
    /// Split each bucket by `severity` (logs only).
    pub by_severity: bool,
}

/// One bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// Its start, ns.
    pub start: i64,
    /// Records in `[start, start + interval)`.
    pub count: u64,
    /// Per severity text, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_severity: Option<std::collections::BTreeMap<String, u64>>,
}

/// Counts the matches of `request.query` per interval over `[start, end]`, empty intervals
/// included.
pub fn histogram(
    store: &IndexStore,
    parser: &Parser,
    request: &HistogramRequest,
) -> Result<Vec<Bucket>, SearchError> {
    use std::collections::BTreeMap;
    use tantivy::aggregation::AggregationCollector;
    use tantivy::aggregation::agg_req::Aggregations;

    if request.interval < 1_000_000 {
        return Err(SearchError::InvalidParameter(
            "interval must be at least 1 ms".to_owned(),
        ));
    }
    if request.start > request.end {
        return Err(SearchError::InvalidParameter(
            "start is after end".to_owned(),
        ));
    }
    let first = request.start - request.start.rem_euclid(request.interval);
    let buckets = (request.end - first) / request.interval + 1;
    if buckets > MAX_BUCKETS {
        return Err(SearchError::InvalidParameter(format!(
            "{buckets} buckets; at most {MAX_BUCKETS}: widen the interval or narrow the range"
        )));
    }
    let schema = store.schema();
    let ts = field(schema, "ts");
    let query = all_of(vec![
        parser.parse(&request.query)?,
        range_i64(
            ts,
            Bound::Included(request.start),
            Bound::Included(request.end),
        ),
    ]);
    let mut spec = serde_json::json!({
        "h": { "histogram": { "field": "ts", "interval": request.interval as f64 } }
    });
    if request.by_severity {
        spec["h"]["aggs"] =
            serde_json::json!({ "sev": { "terms": { "field": "severity", "size": 32 } } });
    }
    let aggregations: Aggregations = serde_json::from_value(spec)
        .map_err(|e| SearchError::InvalidParameter(format!("histogram: {e}")))?;
    let mut counts: BTreeMap<i64, (u64, BTreeMap<String, u64>)> = (0..buckets)
        .map(|i| (first + i * request.interval, (0, BTreeMap::new())))
        .collect();
    for partition in store.partitions_newest_first(Some(request.start), Some(request.end)) {
        let collector = AggregationCollector::from_aggs(aggregations.clone(), Default::default());
        let result = partition
            .searcher()
            .search(&*query, &collector)
            .map_err(tantivy("histogram"))?;
        let result = serde_json::to_value(&result).unwrap_or(Value::Null);
        for bucket in result["h"]["buckets"].as_array().into_iter().flatten() {
            let Some(key) = bucket["key"].as_f64() else {
                continue;
            };
            let count = bucket["doc_count"].as_u64().unwrap_or(0);
            // Keys are bucket starts as f64; snap to the exact start.
            let start = first
                + ((key as i64 - first) as f64 / request.interval as f64).round() as i64
                    * request.interval;
            let entry = counts.entry(start).or_default();
            entry.0 += count;
            for severity in bucket["sev"]["buckets"].as_array().into_iter().flatten() {
                if let (Some(name), Some(n)) =
                    (severity["key"].as_str(), severity["doc_count"].as_u64())
                {
                    *entry.1.entry(name.to_owned()).or_default() += n;
                }
            }
        }
    }
    Ok(counts
        .into_iter()
        .filter(|(start, _)| *start >= first && *start <= request.end)
        .map(|(start, (count, severities))| Bucket {
            start,
            count,
            by_severity: request.by_severity.then_some(severities),
        })
        .collect())
}

/// Records matching `query` indexed after `after` (a `seq`), in the order they were indexed,
/// at most `limit`: what a live tail shows next. Records are followed by when they arrived,
/// not by their own time, so late ones are not missed.
pub fn tail(
    store: &IndexStore,
    parser: &Parser,
    query: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Hit>, SearchError> {
    let schema = store.schema();
    let seq = field(schema, "seq");
    let query = all_of(vec![
        parser.parse(query)?,
        Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(seq, after)),
            Bound::Unbounded,
        )),
    ]);
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut hits = Vec::new();
    for partition in store.partitions_newest_first(None, None) {
        let searcher = partition.searcher();
        let top = TopDocs::with_limit(limit).order_by((
            (SortByStaticFastValue::<u64>::for_field("seq"), Order::Asc),
            (SortByStaticFastValue::<i64>::for_field("ts"), Order::Asc),
        ));
        for ((seq_value, ts_value), address) in
            searcher.search(&*query, &top).map_err(tantivy("tail"))?
        {
            hits.push(fetch(
                &searcher,
                schema,
                address,
                Some((ts_value, seq_value)),
            )?);
        }
    }
    hits.sort_by_key(|h| h.seq);
    hits.truncate(limit);
    Ok(hits)
}

//! Rendering a stored snapshot into a file: the rows are streamed from `review_rows` (a bounded
//! channel between the database reader and a blocking writer thread), so memory stays bounded
//! whatever the size of the review. Rendering is deterministic (no time but the snapshot's), so
//! rendering the same review again gives the same bytes and the same sha256.
//!
//! - CSV: a zip with `summary.csv` and one `<table>.csv` per table (RFC 4180 quoting; a text cell
//!   that starts with `=`, `+`, `-`, `@`, tab or carriage return is prefixed with `'` so that a
//!   spreadsheet does not run it as a formula).
//! - JSON: `{"schema": "harbormaster.review.v1", "review": {…}, "summary": {…}, "tables":
//!   {"<table>": [{"<column>": value, …}, …], …}}`.
//! - XLSX: a `summary` sheet and one sheet per table (constant-memory mode), header row bold and
//!   frozen, filters on; a table longer than a sheet continues on `<table>_2`, `<table>_3`, ….
//! - HTML: one self-contained page that prints well (A4 landscape), charts as inline SVG; the
//!   large tables show their first [`HTML_ROW_LIMIT`] rows and say how many more the other
//!   formats hold.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::store::{self, Review};
use super::{Format, ReviewError, TableSpec, TABLES};

/// The rows of a large table the printable HTML shows.
pub const HTML_ROW_LIMIT: usize = 1000;
/// Data rows per XLSX sheet (the format's limit is 1,048,576 rows, the header included).
pub const XLSX_SHEET_ROWS: u32 = 1_048_575;
/// The JSON export's schema name; a change of field names would be a new version.
pub const JSON_SCHEMA: &str = "harbormaster.review.v1";
/// Rows sent to the writer thread at once.
const BATCH: usize = 1000;

/// A rendered file under the reviews directory.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub file_name: String,
    pub bytes: i64,
    pub sha256: String,
}

/// Where the progress bar is while this file renders.
#[derive(Debug, Clone, Copy)]
pub struct ProgressSpan {
    pub from: i32,
    pub to: i32,
}

/// The facts of a review every format shows on top.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: i64,
    pub scope: String,
    pub team: Option<String>,
    pub trigger: String,
    pub requested_by: String,
    pub taken_at: String,
    pub period_start: Option<String>,
    pub previous_review_id: Option<i64>,
    pub summary: Value,
}

impl Meta {
    pub fn of(review: &Review) -> Self {
        let at = |key: &str| {
            review.summary[key]
                .as_str()
                .map(|text| text.to_string())
                .filter(|text| !text.is_empty())
        };
        Self {
            id: review.id,
            scope: review.scope(),
            team: review.team_name.clone(),
            trigger: review.trigger.clone(),
            requested_by: review.requested_by.clone(),
            taken_at: review
                .taken_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            period_start: at("period_start"),
            previous_review_id: review.previous_review_id,
            summary: review.summary.clone(),
        }
    }

    /// The headline numbers in a stable order.
    pub fn totals(&self) -> Vec<(String, Value)> {
        self.summary["totals"]
            .as_object()
            .map(|totals| {
                TOTALS
                    .iter()
                    .map(|key| {
                        (
                            key.to_string(),
                            totals.get(*key).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The number of rows table `name` holds.
    pub fn rows(&self, name: &str) -> i64 {
        self.summary["tables"][name].as_i64().unwrap_or(0)
    }
}

/// The summary's headline numbers, in the order they are shown.
pub const TOTALS: &[&str] = &[
    "workloads",
    "open_findings",
    "waived_findings",
    "unowned_findings",
    "critical",
    "high",
    "medium",
    "low",
    "info",
    "new_findings",
    "resolved_findings",
    "waivers_active",
    "waivers_expiring_within_30_days",
    "incidents",
    "ownership_gaps",
    "lifecycle_anomalies",
];

/// What the reader hands every writer: the rows are shared, so reading once feeds every format.
#[derive(Clone)]
enum Event {
    Begin(&'static TableSpec, i64),
    Rows(Arc<Vec<Vec<Value>>>),
    End,
}

/// A format's writer: it gets the tables one after the other, row by row.
trait Sink {
    fn begin_table(&mut self, spec: &'static TableSpec, rows: i64) -> Result<(), String>;
    fn row(&mut self, cells: &[Value]) -> Result<(), String>;
    fn end_table(&mut self) -> Result<(), String>;
    fn finish(self: Box<Self>) -> Result<(), String>;
}

/// The reviews directory under the data directory.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("reviews")
}

/// Renders `review` (a finished snapshot) as `format` into a new file under `dir`.
pub async fn render(
    pool: &PgPool,
    review: &Review,
    format: Format,
    dir: &Path,
    progress: Option<ProgressSpan>,
) -> Result<Rendered, ReviewError> {
    let mut rendered = render_all(pool, review, &[format], dir, progress).await?;
    Ok(rendered.remove(0).1)
}

/// One file being written: its writer runs on a blocking thread of its own.
struct Output {
    format: Format,
    file_name: String,
    partial: PathBuf,
    sender: mpsc::Sender<Event>,
    writer: tokio::task::JoinHandle<Result<(), String>>,
}

/// Renders `review` in every one of `formats` at once: the stored rows are read once and handed
/// to one writer thread per format, so the formats are written in parallel and the slowest one
/// sets the pace (each channel holds a few batches: memory stays bounded). Either every file is
/// written, or none is kept.
pub async fn render_all(
    pool: &PgPool,
    review: &Review,
    formats: &[Format],
    dir: &Path,
    progress: Option<ProgressSpan>,
) -> Result<Vec<(Format, Rendered)>, ReviewError> {
    tokio::fs::create_dir_all(dir).await?;
    let meta = Meta::of(review);
    let total_rows: i64 = TABLES.iter().map(|t| meta.rows(t.name)).sum();
    let mut outputs = Vec::with_capacity(formats.len());
    for &format in formats {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let file_name = format!(
            "review-{}-{}.{}",
            review.id,
            &token[..12],
            format.extension()
        );
        let partial = dir.join(format!("{file_name}.partial"));
        let (sender, mut receiver) = mpsc::channel::<Event>(8);
        let writer_path = partial.clone();
        let writer_dir = dir.to_path_buf();
        let writer_meta = meta.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut sink = open_sink(format, &writer_path, &writer_dir, &writer_meta)?;
            while let Some(event) = receiver.blocking_recv() {
                match event {
                    Event::Begin(spec, rows) => sink.begin_table(spec, rows)?,
                    Event::Rows(rows) => {
                        for row in rows.iter() {
                            sink.row(row)?;
                        }
                    }
                    Event::End => sink.end_table()?,
                }
            }
            sink.finish()
        });
        outputs.push(Output {
            format,
            file_name,
            partial,
            sender,
            writer,
        });
    }

    let senders: Vec<(Format, mpsc::Sender<Event>)> = outputs
        .iter()
        .map(|output| (output.format, output.sender.clone()))
        .collect();
    let fed = feed(pool, review.id, &senders, &meta, progress, total_rows).await;
    drop(senders);
    // A writer's own error explains a stop better than the reader's "stopped early".
    let mut failure: Option<ReviewError> = None;
    let mut written = Vec::with_capacity(outputs.len());
    for output in outputs {
        let Output {
            format,
            file_name,
            partial,
            sender,
            writer,
        } = output;
        drop(sender);
        let result = match writer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(ReviewError::Render { format, message }),
            Err(err) => Err(ReviewError::render(format, err)),
        };
        if let Err(err) = result {
            failure.get_or_insert(err);
        }
        written.push((format, file_name, partial));
    }
    if let Some(err) = failure.or(fed.err()) {
        for (_, _, partial) in &written {
            let _ = tokio::fs::remove_file(partial).await;
        }
        return Err(err);
    }

    let hashing: Vec<_> = written
        .iter()
        .map(|(_, _, partial)| {
            let path = partial.clone();
            tokio::task::spawn_blocking(move || sha256_of(&path))
        })
        .collect();
    let mut rendered = Vec::with_capacity(written.len());
    for ((format, file_name, partial), hashed) in written.into_iter().zip(hashing) {
        let (bytes, sha256) = hashed
            .await
            .map_err(|err| ReviewError::render(format, err))??;
        tokio::fs::rename(&partial, dir.join(&file_name)).await?;
        rendered.push((
            format,
            Rendered {
                file_name,
                bytes,
                sha256,
            },
        ));
    }
    Ok(rendered)
}

/// Reads every table of the review in order and hands the rows to every writer.
async fn feed(
    pool: &PgPool,
    id: i64,
    senders: &[(Format, mpsc::Sender<Event>)],
    meta: &Meta,
    progress: Option<ProgressSpan>,
    total_rows: i64,
) -> Result<(), ReviewError> {
    let send = |event: Event| async move {
        for (format, sender) in senders {
            sender
                .send(event.clone())
                .await
                .map_err(|_| ReviewError::render(*format, "the writer stopped early"))?;
        }
        Ok::<(), ReviewError>(())
    };
    let names: Vec<&str> = senders.iter().map(|(format, _)| format.as_str()).collect();
    let phase = format!("rendering {}", names.join(", "));
    // The printable HTML needs only the first rows of a large table.
    let html_only = senders.iter().all(|(format, _)| *format == Format::Html);
    let mut done: i64 = 0;
    let mut reported: i64 = 0;
    for spec in TABLES {
        send(Event::Begin(spec, meta.rows(spec.name))).await?;
        let limit = if html_only && spec.large {
            HTML_ROW_LIMIT as i64
        } else {
            i64::MAX
        };
        let mut rows = sqlx::query_scalar!(
            r#"select cells as "cells!: sqlx::types::Json<Vec<Value>>" from review_rows
               where review_id = $1 and tbl = $2 order by key limit $3"#,
            id,
            spec.name,
            limit
        )
        .fetch(pool);
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(sqlx::types::Json(cells)) = rows.try_next().await? {
            batch.push(cells);
            if batch.len() == BATCH {
                done += BATCH as i64;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                send(Event::Rows(Arc::new(full))).await?;
                if let Some(span) = progress {
                    if done - reported >= 50_000 {
                        reported = done;
                        let percent = span.from
                            + ((span.to - span.from) as i64 * done / total_rows.max(1)) as i32;
                        store::progress(pool, id, &phase, percent.min(span.to), done).await?;
                    }
                }
            }
        }
        done += batch.len() as i64;
        if !batch.is_empty() {
            send(Event::Rows(Arc::new(batch))).await?;
        }
        send(Event::End).await?;
    }
    if let Some(span) = progress {
        let phase = format!("rendered {}", names.join(", "));
        store::progress(pool, id, &phase, span.to, done).await?;
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<(i64, String), ReviewError> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes: i64 = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        bytes += read as i64;
        hasher.update(&buffer[..read]);
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn open_sink(
    format: Format,
    path: &Path,
    dir: &Path,
    meta: &Meta,
) -> Result<Box<dyn Sink + Send>, String> {
    let file = || File::create(path).map_err(|err| format!("creating {}: {err}", path.display()));
    Ok(match format {
        Format::Csv => Box::new(CsvZip::new(file()?, meta)?),
        Format::Json => Box::new(JsonSink::new(file()?, meta)?),
        Format::Xlsx => Box::new(XlsxSink::new(path, dir, meta)?),
        Format::Html => Box::new(HtmlSink::new(file()?, meta)?),
    })
}

/// A cell as text: numbers as JSON writes them, booleans as true / false, null as nothing.
pub fn cell_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::String(text) => Cow::Borrowed(text),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        other => Cow::Owned(other.to_string()),
    }
}

fn io(err: impl std::fmt::Display) -> String {
    err.to_string()
}

// ---------------------------------------------------------------------------------------------
// CSV in a zip.

struct CsvZip {
    zip: zip::ZipWriter<BufWriter<File>>,
    line: String,
}

impl CsvZip {
    fn new(file: File, meta: &Meta) -> Result<Self, String> {
        let mut sink = Self {
            zip: zip::ZipWriter::new(BufWriter::new(file)),
            line: String::new(),
        };
        sink.start("summary")?;
        sink.write_record(&["key".into(), "value".into()])?;
        for (key, value) in summary_pairs(meta) {
            sink.write_record(&[Value::String(key), value])?;
        }
        Ok(sink)
    }

    fn start(&mut self, name: &str) -> Result<(), String> {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(true);
        self.zip
            .start_file(format!("{name}.csv"), options)
            .map_err(io)
    }

    fn write_record(&mut self, cells: &[Value]) -> Result<(), String> {
        self.line.clear();
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.line.push(',');
            }
            csv_field(&mut self.line, cell);
        }
        self.line.push_str("\r\n");
        self.zip.write_all(self.line.as_bytes()).map_err(io)
    }
}

/// Appends one CSV field, quoted when it must be, with formula-looking text defused.
pub fn csv_field(line: &mut String, cell: &Value) {
    let text = cell_text(cell);
    let formula =
        matches!(cell, Value::String(_)) && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || text.contains([',', '"', '\n', '\r']);
    if quote {
        line.push('"');
        if formula {
            line.push('\'');
        }
        line.push_str(&text.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(&text);
    }
}

impl Sink for CsvZip {
    fn begin_table(&mut self, spec: &'static TableSpec, _rows: i64) -> Result<(), String> {
        self.start(spec.name)?;
        let header: Vec<Value> = spec.columns.iter().map(|c| Value::from(*c)).collect();
        self.write_record(&header)
    }

    fn row(&mut self, cells: &[Value]) -> Result<(), String> {
        self.write_record(cells)
    }

    fn end_table(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        let mut inner = self.zip.finish().map_err(io)?;
        inner.flush().map_err(io)
    }
}

/// The review's facts and headline numbers as key / value pairs (CSV and XLSX summaries).
fn summary_pairs(meta: &Meta) -> Vec<(String, Value)> {
    let mut pairs = vec![
        ("schema".to_string(), Value::from(JSON_SCHEMA)),
        ("review_id".to_string(), Value::from(meta.id)),
        ("scope".to_string(), Value::from(meta.scope.clone())),
        ("taken_at".to_string(), Value::from(meta.taken_at.clone())),
        (
            "period_start".to_string(),
            meta.period_start.clone().map_or(Value::Null, Value::from),
        ),
        (
            "previous_review_id".to_string(),
            meta.previous_review_id.map_or(Value::Null, Value::from),
        ),
        ("trigger".to_string(), Value::from(meta.trigger.clone())),
        (
            "requested_by".to_string(),
            Value::from(meta.requested_by.clone()),
        ),
    ];
    pairs.extend(meta.totals());
    pairs
}

// ---------------------------------------------------------------------------------------------
// JSON.

struct JsonSink {
    out: BufWriter<File>,
    spec: Option<&'static TableSpec>,
    first_table: bool,
    first_row: bool,
}

impl JsonSink {
    fn new(file: File, meta: &Meta) -> Result<Self, String> {
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let review = serde_json::json!({
            "id": meta.id,
            "scope": {"team": meta.team},
            "trigger": meta.trigger,
            "requested_by": meta.requested_by,
            "taken_at": meta.taken_at,
            "period_start": meta.period_start,
            "previous_review_id": meta.previous_review_id,
        });
        let totals: serde_json::Map<String, Value> = meta.totals().into_iter().collect();
        let tables: serde_json::Map<String, Value> = TABLES
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    serde_json::json!({"title": t.title, "columns": t.columns, "rows": meta.rows(t.name)}),
                )
            })
            .collect();
        write!(
            out,
            "{{\n\"schema\": \"{JSON_SCHEMA}\",\n\"review\": {review},\n\"summary\": {},\n\"table_info\": {},\n\"tables\": {{",
            Value::Object(totals),
            Value::Object(tables)
        )
        .map_err(io)?;
        Ok(Self {
            out,
            spec: None,
            first_table: true,
            first_row: true,
        })
    }
}

impl Sink for JsonSink {
    fn begin_table(&mut self, spec: &'static TableSpec, _rows: i64) -> Result<(), String> {
        let comma = if self.first_table { "" } else { "," };
        self.first_table = false;
        self.first_row = true;
        self.spec = Some(spec);
        write!(self.out, "{comma}\n\"{}\": [", spec.name).map_err(io)
    }

    fn row(&mut self, cells: &[Value]) -> Result<(), String> {
        let spec = self.spec.ok_or("a row outside a table")?;
        let comma = if self.first_row { "" } else { "," };
        self.first_row = false;
        write!(self.out, "{comma}\n{{").map_err(io)?;
        for (index, column) in spec.columns.iter().enumerate() {
            let sep = if index == 0 { "" } else { ", " };
            write!(self.out, "{sep}\"{column}\": ").map_err(io)?;
            serde_json::to_writer(&mut self.out, cells.get(index).unwrap_or(&Value::Null))
                .map_err(io)?;
        }
        self.out.write_all(b"}").map_err(io)
    }

    fn end_table(&mut self) -> Result<(), String> {
        let newline = if self.first_row { "" } else { "\n" };
        write!(self.out, "{newline}]").map_err(io)
    }

    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.out.write_all(b"\n}\n}\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

// ---------------------------------------------------------------------------------------------
// XLSX.

struct XlsxSink {
    workbook: rust_xlsxwriter::Workbook,
    path: PathBuf,
    header: rust_xlsxwriter::Format,
    spec: Option<&'static TableSpec>,
    /// The current sheet's index, its data rows so far, and its continuation number.
    sheet: usize,
    rows: u32,
    part: u32,
}

/// Excel refuses longer strings in a cell.
const XLSX_MAX_STRING: usize = 32_767;

impl XlsxSink {
    fn new(path: &Path, dir: &Path, meta: &Meta) -> Result<Self, String> {
        use rust_xlsxwriter::{DocProperties, ExcelDateTime, Workbook};

        let mut workbook = Workbook::new();
        workbook.set_tempdir(dir).map_err(io)?;
        workbook.use_zip_large_file(true);
        let mut properties = DocProperties::new()
            .set_title(format!("Harbormaster review {} ({})", meta.id, meta.scope))
            .set_author("Harbormaster");
        if let Ok(taken) = chrono::DateTime::parse_from_rfc3339(&meta.taken_at) {
            if let Ok(at) = ExcelDateTime::from_timestamp(taken.timestamp()) {
                properties = properties.set_creation_datetime(&at);
            }
        }
        workbook.set_properties(&properties);
        let header = rust_xlsxwriter::Format::new().set_bold();
        let mut sink = Self {
            workbook,
            path: path.to_path_buf(),
            header,
            spec: None,
            sheet: 0,
            rows: 0,
            part: 1,
        };
        let pairs = summary_pairs(meta);
        sink.add_sheet("summary", &["key", "value"])?;
        for (key, value) in pairs {
            sink.write_row(&[Value::String(key), value])?;
        }
        sink.close_sheet(2)?;
        Ok(sink)
    }

    fn add_sheet(&mut self, name: &str, columns: &[&str]) -> Result<(), String> {
        let sheet = self.workbook.add_worksheet_with_constant_memory();
        sheet.set_name(name).map_err(io)?;
        for (col, column) in columns.iter().enumerate() {
            sheet
                .write_string_with_format(0, col as u16, *column, &self.header)
                .map_err(io)?;
            sheet
                .set_column_width(col as u16, (column.len() as f64 + 4.0).max(10.0))
                .map_err(io)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(io)?;
        self.sheet = self.workbook.worksheets_mut().len() - 1;
        self.rows = 0;
        Ok(())
    }

    fn close_sheet(&mut self, columns: usize) -> Result<(), String> {
        let rows = self.rows;
        let sheet = self.workbook.worksheet_from_index(self.sheet).map_err(io)?;
        sheet
            .autofilter(0, 0, rows.max(1), (columns.max(1) - 1) as u16)
            .map_err(io)?;
        Ok(())
    }

    fn write_row(&mut self, cells: &[Value]) -> Result<(), String> {
        let row = self.rows + 1;
        let sheet = self.workbook.worksheet_from_index(self.sheet).map_err(io)?;
        for (col, cell) in cells.iter().enumerate() {
            let col = col as u16;
            match cell {
                Value::Null => {}
                Value::Bool(flag) => {
                    sheet.write_boolean(row, col, *flag).map_err(io)?;
                }
                Value::Number(number) => {
                    sheet
                        .write_number(row, col, number.as_f64().unwrap_or_default())
                        .map_err(io)?;
                }
                Value::String(text) => {
                    let text = if text.len() > XLSX_MAX_STRING {
                        let mut end = XLSX_MAX_STRING;
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        &text[..end]
                    } else {
                        text.as_str()
                    };
                    sheet.write_string(row, col, text).map_err(io)?;
                }
                other => {
                    sheet
                        .write_string(row, col, other.to_string())
                        .map_err(io)?;
                }
            }
        }
        self.rows = row;
        Ok(())
    }
}

impl Sink for XlsxSink {
    fn begin_table(&mut self, spec: &'static TableSpec, _rows: i64) -> Result<(), String> {
        self.spec = Some(spec);
        self.part = 1;
        self.add_sheet(spec.name, spec.columns)
    }

    fn row(&mut self, cells: &[Value]) -> Result<(), String> {
        let spec = self.spec.ok_or("a row outside a table")?;
        if self.rows >= XLSX_SHEET_ROWS {
            self.close_sheet(spec.columns.len())?;
            self.part += 1;
            self.add_sheet(&format!("{}_{}", spec.name, self.part), spec.columns)?;
        }
        self.write_row(cells)
    }

    fn end_table(&mut self) -> Result<(), String> {
        let columns = self.spec.map_or(1, |s| s.columns.len());
        self.close_sheet(columns)
    }

    fn finish(mut self: Box<Self>) -> Result<(), String> {
        let path = self.path.clone();
        self.workbook.save(&path).map_err(io)
    }
}

// ---------------------------------------------------------------------------------------------
// Printable HTML.

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const SEVERITY_COLOURS: [(&str, &str); 5] = [
    ("critical", "#8b1a1a"),
    ("high", "#d9480f"),
    ("medium", "#f08c00"),
    ("low", "#5c7cfa"),
    ("info", "#adb5bd"),
];

/// A horizontal stacked bar chart, one bar per label split by severity (critical … info), as an
/// SVG element drawn with presentation attributes only. Every label is escaped.
pub fn severity_chart(title: &str, bars: &[(String, [i64; 5])]) -> String {
    let label_width = 170.0;
    let width = 720.0;
    let bar_height = 18.0;
    let gap = 6.0;
    let top = 26.0;
    let height = top + bars.len().max(1) as f64 * (bar_height + gap) + 24.0;
    let max = bars
        .iter()
        .map(|(_, counts)| counts.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let scale = (width - label_width - 60.0) / max;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\"><title>{}</title>",
        escape(title)
    );
    svg.push_str(&format!(
        "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"bold\" fill=\"#222\">{}</text>",
        escape(title)
    ));
    for (index, (label, counts)) in bars.iter().enumerate() {
        let y = top + index as f64 * (bar_height + gap);
        let short: String = label.chars().take(26).collect();
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\" fill=\"#222\">{}</text>",
            y + 13.0,
            escape(&short)
        ));
        let mut x = label_width;
        for (count, (severity, colour)) in counts.iter().zip(SEVERITY_COLOURS) {
            if *count > 0 {
                let w = *count as f64 * scale;
                svg.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar_height}\" fill=\"{colour}\"><title>{severity}: {count}</title></rect>"
                ));
                x += w;
            }
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" fill=\"#222\">{}</text>",
            x + 6.0,
            y + 13.0,
            counts.iter().sum::<i64>()
        ));
    }
    let legend_y = height - 8.0;
    for (index, (severity, colour)) in SEVERITY_COLOURS.iter().enumerate() {
        let x = label_width + index as f64 * 90.0;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{legend_y}\" font-size=\"11\" fill=\"#222\">{severity}</text>",
            legend_y - 9.0,
            x + 14.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The severity counts of a posture row (team / layer tables: label first, then the counts of
/// open findings not waived from `first` on: critical, high, medium, low, info).
pub fn severity_bar(cells: &[Value], first: usize) -> (String, [i64; 5]) {
    let mut counts = [0i64; 5];
    for (slot, count) in counts.iter_mut().enumerate() {
        *count = cells
            .get(first + slot)
            .and_then(Value::as_i64)
            .unwrap_or_default();
    }
    (cell_text(&cells[0]).into_owned(), counts)
}

const HTML_STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;margin:24px;font-size:13px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px;border-bottom:1px solid #ccc;padding-bottom:2px}
.meta{color:#555;margin:0 0 12px}dl.totals{display:grid;grid-template-columns:repeat(4,auto);gap:2px 16px;justify-content:start}
dl.totals dt{color:#555}dl.totals dd{margin:0;font-weight:bold}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}th,td{border:1px solid #ccc;padding:2px 5px;text-align:left;vertical-align:top}
th{background:#f1f3f5}td.num{text-align:right}tbody tr:nth-child(even){background:#fafafa}
.note{color:#555;font-style:italic}.chart{max-width:100%;height:auto;display:block;margin:6px 0}
@page{size:A4 landscape;margin:12mm}
@media print{body{margin:0;font-size:10px}thead{display:table-header-group}tr,svg{break-inside:avoid}h2{break-after:avoid}}
";

struct HtmlSink {
    out: BufWriter<File>,
    spec: Option<&'static TableSpec>,
    rows_in_table: i64,
    shown: usize,
    /// Rows of the posture tables, kept for their charts.
    chart_rows: Vec<(String, [i64; 5])>,
    chart_cells: Vec<Vec<Value>>,
}

impl HtmlSink {
    fn new(file: File, meta: &Meta) -> Result<Self, String> {
        let mut out = BufWriter::new(file);
        let title = format!("Harbormaster review {} — {}", meta.id, meta.scope);
        write!(
            out,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"meta\">Snapshot taken {} · scope {} · {} by {}{}</p>\n",
            escape(&title),
            escape(&title),
            escape(&meta.taken_at),
            escape(&meta.scope),
            escape(&meta.trigger),
            escape(&meta.requested_by),
            match (&meta.previous_review_id, &meta.period_start) {
                (Some(previous), Some(start)) => format!(
                    " · compared with review {previous} (taken {})",
                    escape(start)
                ),
                _ => " · no previous review to compare with".to_string(),
            }
        )
        .map_err(io)?;
        out.write_all(b"<h2>Summary</h2>\n<dl class=\"totals\">")
            .map_err(io)?;
        for (key, value) in meta.totals() {
            write!(
                out,
                "<dt>{}</dt><dd>{}</dd>",
                escape(&key.replace('_', " ")),
                escape(&cell_text(&value))
            )
            .map_err(io)?;
        }
        out.write_all(b"</dl>\n").map_err(io)?;
        Ok(Self {
            out,
            spec: None,
            rows_in_table: 0,
            shown: 0,
            chart_rows: Vec::new(),
            chart_cells: Vec::new(),
        })
    }

    fn charted(spec: &TableSpec) -> Option<(&'static str, usize)> {
        match spec.name {
            "posture_by_team" => Some(("Open findings by team (not waived)", 4)),
            "posture_by_layer" => Some(("Open findings by layer (not waived)", 3)),
            _ => None,
        }
    }
}

impl Sink for HtmlSink {
    fn begin_table(&mut self, spec: &'static TableSpec, rows: i64) -> Result<(), String> {
        self.spec = Some(spec);
        self.rows_in_table = rows;
        self.shown = 0;
        self.chart_rows.clear();
        self.chart_cells.clear();
        write!(
            self.out,
            "<section id=\"{}\">\n<h2>{} <small>({rows} rows)</small></h2>\n",
            spec.name,
            escape(spec.title)
        )
        .map_err(io)?;
        // A chart goes above its table, so the posture tables are written at their end.
        if Self::charted(spec).is_none() {
            self.write_head(spec)?;
        }
        Ok(())
    }

    fn row(&mut self, cells: &[Value]) -> Result<(), String> {
        let spec = self.spec.ok_or("a row outside a table")?;
        if let Some((_, first)) = Self::charted(spec) {
            self.chart_rows.push(severity_bar(cells, first));
            // Keep the whole row for the table too (these tables are small).
            self.chart_cells.push(cells.to_vec());
            return Ok(());
        }
        if spec.large && self.shown >= HTML_ROW_LIMIT {
            return Ok(());
        }
        self.shown += 1;
        self.write_row(cells)
    }

    fn end_table(&mut self) -> Result<(), String> {
        let spec = self.spec.ok_or("no table to end")?;
        if let Some((title, _)) = Self::charted(spec) {
            let chart = severity_chart(title, &self.chart_rows);
            self.out.write_all(chart.as_bytes()).map_err(io)?;
            self.write_head(spec)?;
            for cells in std::mem::take(&mut self.chart_cells) {
                self.write_row(&cells)?;
            }
        }
        self.out.write_all(b"</tbody></table>\n").map_err(io)?;
        if self.rows_in_table == 0 {
            self.out
                .write_all(b"<p class=\"note\">None.</p>\n")
                .map_err(io)?;
        } else if spec.large && self.rows_in_table > self.shown as i64 {
            writeln!(
                self.out,
                "<p class=\"note\">The first {} of {} rows; the CSV, JSON and XLSX exports hold every row.</p>",
                self.shown, self.rows_in_table
            )
            .map_err(io)?;
        }
        self.out.write_all(b"</section>\n").map_err(io)
    }

    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.out.write_all(b"</body>\n</html>\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

impl HtmlSink {
    fn write_head(&mut self, spec: &TableSpec) -> Result<(), String> {
        self.out.write_all(b"<table><thead><tr>").map_err(io)?;
        for column in spec.columns {
            write!(self.out, "<th scope=\"col\">{}</th>", escape(column)).map_err(io)?;
        }
        self.out.write_all(b"</tr></thead><tbody>\n").map_err(io)
    }

    fn write_row(&mut self, cells: &[Value]) -> Result<(), String> {
        self.out.write_all(b"<tr>").map_err(io)?;
        for cell in cells {
            let class = if cell.is_number() {
                " class=\"num\""
            } else {
                ""
            };
            write!(self.out, "<td{class}>{}</td>", escape(&cell_text(cell))).map_err(io)?;
        }
        self.out.write_all(b"</tr>\n").map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut line = String::new();
        for cell in [
            json!("plain"),
            json!("a,b"),
            json!("say \"hi\""),
            json!("=HYPERLINK(\"x\")"),
            json!(-3),
            json!(null),
            json!(true),
        ] {
            csv_field(&mut line, &cell);
            line.push('|');
        }
        assert_eq!(
            line,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"'=HYPERLINK(\"\"x\"\")\"|-3||true|"
        );
    }

    #[test]
    fn chart_labels_are_escaped() {
        let svg = severity_chart(
            "By team",
            &[("<script>alert(1)</script>".into(), [1, 2, 0, 0, 0])],
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("critical: 1"));
    }
}

//! Ground truth and predictions from a path, a dict in the ActivityNet layout, or table columns.
//!
//! Paths go through `lofi-eval`'s file readers unchanged. Dicts are walked here and fed to
//! `GroundTruth::from_database` / `PredictionsBuilder`, the same constructors the readers use,
//! so every entry gets the file reader's checks and messages. Tables (pandas DataFrames with the
//! official columns) arrive from the Python side as columns: video ids and labels as lists,
//! `t-start` / `t-end` / `score` as native-endian float64 bytes. A table's rows keep their order,
//! which plays the part of file order (equal scores keep row order), and a prediction's entry
//! number in messages is its row position.

use lofi_eval::{
    DatabaseAnnotation, DatabaseVideo, EvalError, GroundTruth, GroundTruthOptions, PredictionKind,
    Predictions, PredictionsBuilder, VideoSlot,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where an input comes from.
pub(crate) enum Source<'py> {
    /// A JSON file.
    Path(PathBuf),
    /// A dict in the ActivityNet layout; `name` stands for the file name in messages.
    Dict {
        name: PathBuf,
        dict: Bound<'py, PyDict>,
    },
    /// Table columns.
    Columns { name: PathBuf, columns: Columns },
}

/// The columns of a table of segments.
pub(crate) struct Columns {
    videos: Vec<String>,
    starts: Vec<f64>,
    ends: Vec<f64>,
    labels: Option<Vec<Option<String>>>,
    scores: Option<Vec<f64>>,
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn floats(name: &Path, column: &str, bytes: &Bound<'_, PyAny>) -> Result<Vec<f64>, EvalError> {
    let bytes = bytes.cast::<PyBytes>().map_err(|_| {
        EvalError::Invalid(format!(
            "{}: column {column:?} must arrive as float64 bytes",
            name.display()
        ))
    })?;
    let raw = bytes.as_bytes();
    if raw.len() % 8 != 0 {
        return Err(EvalError::Invalid(format!(
            "{}: column {column:?} has {} bytes, not a whole number of float64 values",
            name.display(),
            raw.len()
        )));
    }
    Ok(raw
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// A text cell: a string, or an integer written in decimal; `None` for a missing value
/// (`None` or NaN).
fn text_cell(cell: &Bound<'_, PyAny>) -> Result<Option<String>, String> {
    if cell.is_none() {
        return Ok(None);
    }
    if let Ok(text) = cell.cast::<PyString>() {
        return text
            .to_cow()
            .map(|s| Some(s.to_string()))
            .map_err(|e| e.to_string());
    }
    if let Ok(value) = cell.extract::<i64>() {
        return Ok(Some(value.to_string()));
    }
    if let Ok(value) = cell.extract::<f64>() {
        if value.is_nan() {
            return Ok(None);
        }
    }
    Err(format!(
        "expected a string, found {} {}",
        type_name(cell),
        cell.repr().map(|r| r.to_string()).unwrap_or_default()
    ))
}

fn texts(
    name: &Path,
    column: &str,
    list: &Bound<'_, PyAny>,
) -> Result<Vec<Option<String>>, EvalError> {
    let list = list.cast::<PyList>().map_err(|_| {
        EvalError::Invalid(format!(
            "{}: column {column:?} must arrive as a list",
            name.display()
        ))
    })?;
    list.iter()
        .enumerate()
        .map(|(row, cell)| {
            text_cell(&cell).map_err(|message| EvalError::Format {
                path: name.to_path_buf(),
                message: format!("column {column:?}, row {row}: {message}"),
            })
        })
        .collect()
}

impl<'py> Source<'py> {
    /// Reads what the Python side passed: a `str` path, a `dict`, or
    /// `("columns", name, video_ids, t_start, t_end, labels | None, scores | None)`.
    pub(crate) fn from_py(object: &Bound<'py, PyAny>, dict_name: &str) -> Result<Self, EvalError> {
        if let Ok(path) = object.cast::<PyString>() {
            let path = path
                .to_cow()
                .map_err(|e| EvalError::Invalid(e.to_string()))?;
            return Ok(Source::Path(PathBuf::from(path.as_ref())));
        }
        if let Ok(dict) = object.cast::<PyDict>() {
            return Ok(Source::Dict {
                name: PathBuf::from(dict_name),
                dict: dict.clone(),
            });
        }
        if let Ok(tuple) = object.cast::<PyTuple>() {
            if tuple.len() == 7
                && tuple
                    .get_item(0)
                    .is_ok_and(|t| t.extract::<String>().is_ok_and(|t| t == "columns"))
            {
                let item = |i: usize| {
                    tuple
                        .get_item(i)
                        .map_err(|e| EvalError::Invalid(e.to_string()))
                };
                let name = PathBuf::from(
                    item(1)?
                        .extract::<String>()
                        .map_err(|e| EvalError::Invalid(e.to_string()))?,
                );
                let videos = texts(&name, "video-id", &item(2)?)?
                    .into_iter()
                    .enumerate()
                    .map(|(row, id)| {
                        id.ok_or_else(|| EvalError::Format {
                            path: name.clone(),
                            message: format!("column \"video-id\", row {row}: missing value"),
                        })
                    })
                    .collect::<Result<Vec<String>, EvalError>>()?;
                let starts = floats(&name, "t-start", &item(3)?)?;
                let ends = floats(&name, "t-end", &item(4)?)?;
                let labels_item = item(5)?;
                let labels = if labels_item.is_none() {
                    None
                } else {
                    Some(texts(&name, "label", &labels_item)?)
                };
                let scores_item = item(6)?;
                let scores = if scores_item.is_none() {
                    None
                } else {
                    Some(floats(&name, "score", &scores_item)?)
                };
                let rows = videos.len();
                let lengths = [
                    starts.len(),
                    ends.len(),
                    labels.as_ref().map_or(rows, Vec::len),
                    scores.as_ref().map_or(rows, Vec::len),
                ];
                if lengths.iter().any(|&n| n != rows) {
                    return Err(EvalError::Invalid(format!(
                        "{}: columns have different lengths",
                        name.display()
                    )));
                }
                return Ok(Source::Columns {
                    name,
                    columns: Columns {
                        videos,
                        starts,
                        ends,
                        labels,
                        scores,
                    },
                });
            }
        }
        Err(EvalError::Invalid(format!(
            "expected a path, a dict in the ActivityNet layout or a pandas DataFrame, found {}",
            type_name(object)
        )))
    }

    /// The ground truth of the requested subset.
    pub(crate) fn ground_truth(
        &self,
        py: Python<'_>,
        options: &GroundTruthOptions,
    ) -> Result<GroundTruth, EvalError> {
        match self {
            Source::Path(path) => py.detach(|| GroundTruth::from_path(path, options)),
            Source::Dict { name, dict } => {
                let database = database_from_dict(name, dict)?;
                GroundTruth::from_database(database, name, options)
            }
            Source::Columns { name, columns } => {
                // A table holds one subset: every row is a ground-truth segment of it.
                let mut order: Vec<(String, DatabaseVideo)> = Vec::new();
                let mut position: HashMap<&str, usize> = HashMap::new();
                let labels = columns.labels.as_ref().ok_or_else(|| EvalError::Format {
                    path: name.clone(),
                    message: "the ground truth needs a \"label\" column".into(),
                })?;
                for (row, id) in columns.videos.iter().enumerate() {
                    let label = labels[row].clone().ok_or_else(|| EvalError::Format {
                        path: name.clone(),
                        message: format!("column \"label\", row {row}: missing value"),
                    })?;
                    let at = *position.entry(id.as_str()).or_insert_with(|| {
                        order.push((
                            id.clone(),
                            DatabaseVideo {
                                subset: options.subset.clone(),
                                duration: None,
                                fps: None,
                                annotations: Vec::new(),
                            },
                        ));
                        order.len() - 1
                    });
                    order[at].1.annotations.push(DatabaseAnnotation {
                        segment: [columns.starts[row], columns.ends[row]],
                        label,
                    });
                }
                GroundTruth::from_database(order, name, options)
            }
        }
    }

    /// The predictions (detections or proposals), checked against `truth`.
    pub(crate) fn predictions(
        &self,
        py: Python<'_>,
        truth: &GroundTruth,
        kind: PredictionKind,
    ) -> Result<Predictions, EvalError> {
        match self {
            Source::Path(path) => py.detach(|| Predictions::from_path(path, truth, kind)),
            Source::Dict { name, dict } => predictions_from_dict(name, dict, truth, kind),
            Source::Columns { name, columns } => {
                let mut builder =
                    PredictionsBuilder::new(name, truth, kind).with_capacity(columns.videos.len());
                let mut slots: HashMap<&str, VideoSlot> = HashMap::new();
                for (row, id) in columns.videos.iter().enumerate() {
                    let slot = match slots.get(id.as_str()) {
                        Some(slot) => *slot,
                        None => {
                            let slot = builder.video(id)?;
                            slots.insert(id.as_str(), slot);
                            slot
                        }
                    };
                    let label = columns
                        .labels
                        .as_ref()
                        .and_then(|labels| labels[row].as_deref());
                    let score = columns.scores.as_ref().map(|scores| scores[row]);
                    builder.entry(
                        slot,
                        row,
                        label,
                        score,
                        Some([columns.starts[row], columns.ends[row]]),
                    )?;
                }
                Ok(builder.finish())
            }
        }
    }

    /// How the input is named in messages.
    pub(crate) fn name(&self) -> &Path {
        match self {
            Source::Path(path) => path,
            Source::Dict { name, .. } | Source::Columns { name, .. } => name,
        }
    }
}

fn entry_error(name: &Path, video: &str, message: impl Into<String>) -> EvalError {
    EvalError::Entry {
        path: name.to_path_buf(),
        video: video.to_string(),
        message: message.into(),
    }
}

fn format_error(name: &Path, message: impl Into<String>) -> EvalError {
    EvalError::Format {
        path: name.to_path_buf(),
        message: message.into(),
    }
}

/// A number: a Python int or float, or anything with `__float__` (numpy scalars); not a bool or
/// a string.
fn number(value: &Bound<'_, PyAny>) -> Option<f64> {
    if value.is_instance_of::<pyo3::types::PyBool>() || value.is_instance_of::<PyString>() {
        return None;
    }
    value.extract::<f64>().ok()
}

/// `[start, end]` from a list, tuple or 1-D array of two numbers.
fn segment(value: &Bound<'_, PyAny>) -> Result<[f64; 2], String> {
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyDict>() {
        return Err(format!(
            "a segment must be [start, end], found {}",
            type_name(value)
        ));
    }
    let items: Vec<Bound<'_, PyAny>> = match value.try_iter() {
        Ok(iter) => iter
            .collect::<PyResult<Vec<_>>>()
            .map_err(|e| format!("cannot read the segment: {e}"))?,
        Err(_) => {
            return Err(format!(
                "a segment must be [start, end], found {}",
                type_name(value)
            ))
        }
    };
    if items.len() != 2 {
        return Err(format!(
            "a segment must be [start, end], found {} number(s)",
            items.len()
        ));
    }
    let mut ends = [0.0; 2];
    for (end, item) in ends.iter_mut().zip(&items) {
        *end = number(item)
            .ok_or_else(|| format!("a segment must hold numbers, found {}", type_name(item)))?;
    }
    Ok(ends)
}

fn dict_items<'py>(
    name: &Path,
    value: &Bound<'py, PyAny>,
    what: &str,
) -> Result<Vec<(String, Bound<'py, PyAny>)>, EvalError> {
    let dict = value
        .cast::<PyDict>()
        .map_err(|_| format_error(name, format!("expected {what}, found {}", type_name(value))))?;
    dict.iter()
        .map(|(key, value)| {
            let key = key.cast::<PyString>().map_err(|_| {
                format_error(
                    name,
                    format!("a video id must be a string, found {}", type_name(&key)),
                )
            })?;
            let key = key
                .to_cow()
                .map_err(|e| format_error(name, e.to_string()))?
                .to_string();
            Ok((key, value))
        })
        .collect()
}

fn list_items<'py>(value: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = value.cast::<PyList>() {
        return Some(list.iter().collect());
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return Some(tuple.iter().collect());
    }
    None
}

/// `{"database": {video: {"subset", "duration"?, "annotations"?: [{"segment", "label"}]}}}`.
fn database_from_dict(
    name: &Path,
    dict: &Bound<'_, PyDict>,
) -> Result<Vec<(String, DatabaseVideo)>, EvalError> {
    let database = dict
        .get_item("database")
        .map_err(|e| format_error(name, e.to_string()))?
        .ok_or_else(|| format_error(name, "missing the \"database\" key"))?;
    let mut videos = Vec::new();
    for (id, video) in dict_items(name, &database, "an object keyed by video id")? {
        let video = video.cast::<PyDict>().map_err(|_| {
            entry_error(
                name,
                &id,
                format!("expected an object, found {}", type_name(&video)),
            )
        })?;
        let field = |key: &str| -> Result<Option<Bound<'_, PyAny>>, EvalError> {
            let value = video
                .get_item(key)
                .map_err(|e| entry_error(name, &id, e.to_string()))?;
            Ok(value.filter(|v| !v.is_none()))
        };
        let subset =
            field("subset")?.ok_or_else(|| entry_error(name, &id, "missing field `subset`"))?;
        let subset = subset
            .cast::<PyString>()
            .map_err(|_| entry_error(name, &id, "`subset` must be a string"))?
            .to_cow()
            .map_err(|e| entry_error(name, &id, e.to_string()))?
            .to_string();
        let duration = match field("duration")? {
            None => None,
            Some(value) => Some(
                number(&value)
                    .ok_or_else(|| entry_error(name, &id, "`duration` must be a number"))?,
            ),
        };
        let mut annotations = Vec::new();
        if let Some(list) = field("annotations")? {
            let items = list_items(&list)
                .ok_or_else(|| entry_error(name, &id, "`annotations` must be a list"))?;
            for (position, annotation) in items.iter().enumerate() {
                let annotation = annotation.cast::<PyDict>().map_err(|_| {
                    entry_error(
                        name,
                        &id,
                        format!("annotation {position}: expected an object"),
                    )
                })?;
                let get = |key: &str| {
                    annotation
                        .get_item(key)
                        .map_err(|e| entry_error(name, &id, e.to_string()))?
                        .filter(|v| !v.is_none())
                        .ok_or_else(|| {
                            entry_error(
                                name,
                                &id,
                                format!("annotation {position}: missing field `{key}`"),
                            )
                        })
                };
                let ends = segment(&get("segment")?).map_err(|message| {
                    entry_error(name, &id, format!("annotation {position}: {message}"))
                })?;
                let label = get("label")?;
                let label = label
                    .cast::<PyString>()
                    .map_err(|_| {
                        entry_error(
                            name,
                            &id,
                            format!("annotation {position}: `label` must be a string"),
                        )
                    })?
                    .to_cow()
                    .map_err(|e| entry_error(name, &id, e.to_string()))?
                    .to_string();
                annotations.push(DatabaseAnnotation {
                    segment: ends,
                    label,
                });
            }
        }
        videos.push((
            id,
            DatabaseVideo {
                subset,
                duration,
                fps: None,
                annotations,
            },
        ));
    }
    Ok(videos)
}

/// `{"results": {video: [{"label"?, "score", "segment"}]}}`.
fn predictions_from_dict(
    name: &Path,
    dict: &Bound<'_, PyDict>,
    truth: &GroundTruth,
    kind: PredictionKind,
) -> Result<Predictions, EvalError> {
    let results = dict
        .get_item("results")
        .map_err(|e| format_error(name, e.to_string()))?
        .ok_or_else(|| format_error(name, "missing the \"results\" key"))?;
    let mut builder = PredictionsBuilder::new(name, truth, kind);
    for (id, list) in dict_items(
        name,
        &results,
        "an object mapping video ids to lists of predictions",
    )? {
        let slot = builder.video(&id)?;
        let items = list_items(&list).ok_or_else(|| {
            entry_error(
                name,
                &id,
                format!("expected a list of predictions, found {}", type_name(&list)),
            )
        })?;
        for (position, entry) in items.iter().enumerate() {
            let at =
                |message: String| entry_error(name, &id, format!("entry {position}: {message}"));
            let entry = entry.cast::<PyDict>().map_err(|_| {
                at(format!(
                    "expected a prediction object, found {}",
                    type_name(entry)
                ))
            })?;
            let get = |key: &str| -> Result<Option<Bound<'_, PyAny>>, EvalError> {
                Ok(entry
                    .get_item(key)
                    .map_err(|e| at(e.to_string()))?
                    .filter(|v| !v.is_none()))
            };
            let label = match get("label")? {
                None => None,
                Some(value) => Some(
                    value
                        .cast::<PyString>()
                        .map_err(|_| {
                            at(format!(
                                "`label` must be a string, found {}",
                                type_name(&value)
                            ))
                        })?
                        .to_cow()
                        .map_err(|e| at(e.to_string()))?
                        .to_string(),
                ),
            };
            let score = match get("score")? {
                None => None,
                Some(value) => Some(number(&value).ok_or_else(|| {
                    at(format!(
                        "`score` must be a number, found {}",
                        type_name(&value)
                    ))
                })?),
            };
            let ends = match get("segment")? {
                None => None,
                Some(value) => Some(segment(&value).map_err(at)?),
            };
            builder.entry(slot, position, label.as_deref(), score, ends)?;
        }
    }
    Ok(builder.finish())
}

//! A parallel prefetching loader: N worker threads decode different videos while the consumer
//! trains on the previous ones.
//!
//! Why its own module: training and feature extraction spend most of their wall time here, and
//! the Python peers' loaders leak memory and crash on a bad file. This one keeps at most
//! `queue` videos decoded or in flight (memory stays flat however long the run), yields videos in
//! a fixed order that depends only on the job list and the seed (not on thread timing), and turns
//! every failing video into a [`VideoFailure`] (path + reason) that is logged, skipped and listed
//! in the [`LoadReport`] at the end.
//!
//! Duration policy: a job may carry its annotated duration. The clip then covers
//! `[0, annotated]` (annotations are relative to it). A video shorter than that by more than
//! `duration_tolerance` seconds fails; a smaller shortfall is absorbed by clamping sample times to
//! the last frame. A video longer than its annotated duration by more than the tolerance is
//! loaded (the annotations only cover `[0, annotated]`) with a warning that gives both numbers,
//! once per file and process.
//!
//! A job may also carry a `span` `[start, end]` (seconds): the plan's timestamps are then laid
//! over that part of the video instead of all of it, which is how `lofi pretrain` samples trimmed
//! action clips straight from untrimmed videos (no clip files are written).

use crate::error::{VideoError, VideoResult};
use crate::plan::{stride_count, ClipU8, Sampling, SamplingPlan};
use crate::sampler::{Sampler, SamplerOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// One video to load.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoJob {
    /// Video id (as in the annotation file).
    pub id: String,
    /// Path of the video file.
    pub path: PathBuf,
    /// Duration from the annotation file, if any.
    pub annotated_duration: Option<f64>,
    /// Sample only `[start, end]` of the video (seconds; `end` is cut at the clip's duration),
    /// e.g. a window of a long video; `None` samples all of it, `[0, duration]`.
    pub span: Option<[f64; 2]>,
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// What to sample from each video.
    pub plan: SamplingPlan,
    /// Where the snippets go: the plan's `L` over the whole video (rescale, the default) or one
    /// every stride (then the clip has as many snippets as the stride puts on the video).
    pub sampling: Sampling,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Maximum videos decoded or being decoded but not yet consumed (at least 1).
    pub queue: usize,
    /// Shuffle the jobs with this seed; `None` keeps the given order.
    pub seed: Option<u64>,
    /// Allowed shortfall of a video against its annotated duration, in seconds.
    pub duration_tolerance: f64,
    /// Decoder threads per video.
    pub decoder_threads: usize,
}

impl LoaderConfig {
    /// Defaults: 2 workers, queue of 4, no shuffling, 1 s tolerance, 1 decoder thread.
    pub fn new(plan: SamplingPlan) -> Self {
        Self {
            plan,
            sampling: Sampling::Rescale,
            workers: 2,
            queue: 4,
            seed: None,
            duration_tolerance: 1.0,
            decoder_threads: 1,
        }
    }
}

/// A decoded clip and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedVideo {
    /// Video id.
    pub id: String,
    /// Video file.
    pub path: PathBuf,
    /// Duration the clip covers (the span's length, else annotated if given, else measured),
    /// seconds.
    pub duration: f64,
    /// Duration measured from the stream, seconds.
    pub video_duration: f64,
    /// Sample times actually used, seconds (snippet-major, `L * F`).
    pub timestamps: Vec<f64>,
    /// Seconds per snippet: snippet `i` covers `[i s, (i + 1) s)` (`duration / L` for rescale).
    pub snippet_seconds: f64,
    /// The clip, `[L, F, 3, S, S]`.
    pub clip: ClipU8,
}

/// A video that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFailure {
    /// Video id.
    pub id: String,
    /// Video file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Summary of a run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Videos yielded.
    pub loaded: usize,
    /// Videos skipped, in job order.
    pub failed: Vec<VideoFailure>,
    /// Largest number of videos decoded or in flight but not yet consumed (at most `queue`).
    pub max_buffered: usize,
}

struct State {
    next_job: usize,
    next_yield: usize,
    done: HashMap<usize, Result<LoadedVideo, VideoFailure>>,
    shutdown: bool,
    max_buffered: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    jobs: Vec<VideoJob>,
    config: LoaderConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked cannot leave the state half-updated (updates are single
        // assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// Iterates over successfully loaded videos; see the module docs.
pub struct Loader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    report: LoadReport,
}

pub(crate) use lofi_rng::SplitMix64;

/// Shuffle `items` deterministically (Fisher-Yates over lofi-rng's stream).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    SplitMix64::new(seed).shuffle(items);
}

impl Loader {
    /// Start loading `jobs`.
    pub fn new(mut jobs: Vec<VideoJob>, config: LoaderConfig) -> VideoResult<Self> {
        if config.workers == 0 || config.queue == 0 {
            return Err(VideoError::InvalidPlan(format!(
                "loader needs at least one worker and a queue of at least 1 (got {} and {})",
                config.workers, config.queue
            )));
        }
        crate::limits::check_workers(config.workers)?;
        crate::limits::check_clip(
            config.plan.snippets(),
            config.plan.frames_per_snippet(),
            config.plan.fidelity().size,
        )?;
        config.sampling.check().map_err(VideoError::InvalidPlan)?;
        if let Some(seed) = config.seed {
            shuffle(&mut jobs, seed);
        }
        let workers = config.workers.min(jobs.len());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_job: 0,
                next_yield: 0,
                done: HashMap::new(),
                shutdown: false,
                max_buffered: 0,
            }),
            changed: Condvar::new(),
            jobs,
            config,
        });
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("lofi-video-loader-{w}"))
                .spawn(move || worker(&shared))
                .map_err(|e| VideoError::io("<loader thread>", e))?;
            handles.push(handle);
        }
        Ok(Self {
            shared,
            workers: handles,
            report: LoadReport::default(),
        })
    }

    /// Number of jobs (after shuffling, in yield order).
    pub fn jobs(&self) -> &[VideoJob] {
        &self.shared.jobs
    }

    /// Failures so far.
    pub fn failures(&self) -> &[VideoFailure] {
        &self.report.failed
    }

    /// Stop the workers and return the report (videos not consumed yet are not counted).
    pub fn finish(mut self) -> LoadReport {
        self.stop();
        self.report.max_buffered = self.shared.lock().max_buffered;
        std::mem::take(&mut self.report)
    }

    fn stop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.changed.notify_all();
        for handle in self.workers.drain(..) {
            // A worker only ends by returning; a panic inside a job is caught there.
            let _ = handle.join();
        }
    }
}

impl Iterator for Loader {
    type Item = LoadedVideo;

    fn next(&mut self) -> Option<LoadedVideo> {
        loop {
            let result = {
                let mut state = self.shared.lock();
                loop {
                    if state.next_yield >= self.shared.jobs.len() {
                        return None;
                    }
                    let key = state.next_yield;
                    if let Some(r) = state.done.remove(&key) {
                        state.next_yield += 1;
                        break r;
                    }
                    state = self.shared.wait(state);
                }
            };
            self.shared.changed.notify_all();
            match result {
                Ok(video) => {
                    self.report.loaded += 1;
                    return Some(video);
                }
                Err(failure) => {
                    tracing::warn!(
                        video = %failure.id,
                        path = %failure.path.display(),
                        "skipping video: {}",
                        failure.reason
                    );
                    self.report.failed.push(failure);
                }
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(shared: &Shared) {
    let capacity = shared.config.queue;
    loop {
        let index = {
            let mut state = shared.lock();
            loop {
                if state.shutdown || state.next_job >= shared.jobs.len() {
                    return;
                }
                if state.next_job < state.next_yield + capacity {
                    break;
                }
                state = shared.wait(state);
            }
            let index = state.next_job;
            state.next_job += 1;
            state.max_buffered = state.max_buffered.max(state.next_job - state.next_yield);
            index
        };
        let job = &shared.jobs[index];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            load_one(job, &shared.config)
        }));
        let result = match result {
            Ok(Ok(video)) => Ok(video),
            Ok(Err(e)) => Err(VideoFailure {
                id: job.id.clone(),
                path: job.path.clone(),
                reason: e.to_string(),
            }),
            Err(_) => Err(VideoFailure {
                id: job.id.clone(),
                path: job.path.clone(),
                reason: "internal error while decoding (panic caught)".into(),
            }),
        };
        shared.lock().done.insert(index, result);
        shared.changed.notify_all();
    }
}

/// Load one video's clip with the loader's duration policy (see the module docs).
pub fn load_one(job: &VideoJob, config: &LoaderConfig) -> VideoResult<LoadedVideo> {
    let mut sampler = Sampler::open(
        &job.path,
        SamplerOptions {
            threads: config.decoder_threads.max(1),
            ..SamplerOptions::default()
        },
    )?;
    let index = sampler.index();
    let actual = index.duration();
    let duration = match job.annotated_duration {
        Some(annotated) if !annotated.is_finite() || annotated <= 0.0 => {
            return Err(VideoError::InvalidPlan(format!(
                "{}: annotated duration {annotated} is not a positive number",
                job.path.display()
            )))
        }
        Some(annotated) if annotated > actual + config.duration_tolerance => {
            return Err(VideoError::ShorterThanAnnotated {
                path: job.path.clone(),
                actual,
                annotated,
                tolerance: config.duration_tolerance,
            })
        }
        Some(annotated) => {
            if actual > annotated + config.duration_tolerance {
                warn_duration_once(&job.path, &job.id, annotated, actual);
            }
            annotated
        }
        None => actual,
    };
    let (origin, duration) = match job.span {
        None => (0.0, duration),
        Some([a, b]) if a.is_finite() && b.is_finite() && 0.0 <= a && a < b && a < duration => {
            (a, b.min(duration) - a)
        }
        Some([a, b]) => {
            return Err(VideoError::InvalidPlan(format!(
                "{}: span [{a}, {b}] s is empty or outside the video's {duration:.3} s",
                job.path.display()
            )))
        }
    };
    let last_frame = index.seconds(index.frame_pts[index.frame_pts.len() - 1]);
    let (times, shape, snippet_seconds) = match config.sampling.stride_seconds(index.fps()) {
        None => (
            config.plan.timestamps(duration),
            config.plan.shape(),
            duration / config.plan.snippets() as f64,
        ),
        Some(step) if step.is_finite() && step > 0.0 => {
            let mut shape = config.plan.shape();
            shape[0] = stride_count(duration, step);
            (config.plan.stride_timestamps(duration, step), shape, step)
        }
        Some(step) => {
            return Err(VideoError::InvalidPlan(format!(
                "{}: stride of {step} s (sampling {:?}, frame rate {})",
                job.path.display(),
                config.sampling,
                index.fps()
            )))
        }
    };
    let timestamps: Vec<f64> = times
        .into_iter()
        .map(|t| (t + origin).min(last_frame))
        .collect();
    let data = sampler.sample(&timestamps, config.plan.size() as u32)?;
    Ok(LoadedVideo {
        id: job.id.clone(),
        path: job.path.clone(),
        duration,
        video_duration: actual,
        timestamps,
        snippet_seconds,
        clip: ClipU8 { shape, data },
    })
}

/// Logs, once per file and process, that a video lasts longer than its annotation says.
fn warn_duration_once(path: &std::path::Path, id: &str, annotated: f64, actual: f64) {
    static WARNED: Mutex<Option<std::collections::HashSet<PathBuf>>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned
        .get_or_insert_with(Default::default)
        .insert(path.to_path_buf())
    {
        tracing::warn!(
            video = %id,
            "{}: the ground truth gives a duration of {annotated:.3} s but the file lasts \
             {actual:.3} s; only the annotated {annotated:.3} s are used",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, 9);
        shuffle(&mut b, 9);
        assert_eq!(a, b);
        let mut c: Vec<usize> = (0..50).collect();
        shuffle(&mut c, 10);
        assert_ne!(a, c);
        a.sort_unstable();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
    }
}

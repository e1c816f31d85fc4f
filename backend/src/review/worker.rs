//! The background generation of queued reviews: claim one (`for update skip locked`, so several
//! servers share the queue), take its snapshot, render its formats, record progress all along.
//! [`run_next`] is one step, which tests call directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::render::{self, ProgressSpan};
use super::snapshot::{self, SnapshotSettings, SNAPSHOT_PERCENT};
use super::store::{self, Export, Review};
use super::{Format, ReviewError};
use crate::config::Config;

/// How often an idle worker looks for queued reviews.
const POLL: Duration = Duration::from_secs(2);

fn settings(config: &Config) -> SnapshotSettings {
    SnapshotSettings {
        image_max_age_days: config.reviews.image_max_age_days as i32,
    }
}

/// Takes the snapshot of review `id` and renders its formats; the review ends succeeded, or
/// failed with the error.
pub async fn generate(pool: &PgPool, config: &Config, id: i64) -> Result<Review, ReviewError> {
    let result = async {
        let started = Instant::now();
        snapshot::take(pool, id, settings(config)).await?;
        tracing::info!(
            review = id,
            seconds = started.elapsed().as_secs_f64(),
            "review snapshot taken"
        );
        let review = store::get(pool, id).await?;
        let formats = review.formats();
        let dir = render::directory(&config.data_dir);
        let span = ProgressSpan {
            from: SNAPSHOT_PERCENT,
            to: 100,
        };
        let started = Instant::now();
        let rendered = render::render_all(pool, &review, &formats, &dir, Some(span)).await?;
        tracing::info!(
            review = id,
            formats = formats.len(),
            seconds = started.elapsed().as_secs_f64(),
            "review exports rendered"
        );
        for (format, rendered) in rendered {
            store::save_export(
                pool,
                id,
                format,
                &rendered.file_name,
                rendered.bytes,
                &rendered.sha256,
            )
            .await?;
        }
        store::succeed(pool, id).await?;
        Ok::<_, ReviewError>(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(review = id, error = %err, "review generation failed");
        store::fail(pool, id, &err.to_string()).await?;
    }
    store::get(pool, id).await
}

/// Claims the next queued review and generates it; `None` when the queue is empty.
pub async fn run_next(pool: &PgPool, config: &Config) -> Result<Option<Review>, ReviewError> {
    let Some(id) = store::claim(pool).await? else {
        return Ok(None);
    };
    Ok(Some(generate(pool, config, id).await?))
}

/// The stored file of `format` for a finished review, rendering it first when it was not asked
/// for at generation or its file is gone (rendering is deterministic: same rows, same bytes).
pub async fn export_file(
    pool: &PgPool,
    config: &Config,
    review: &Review,
    format: Format,
) -> Result<(PathBuf, Export), ReviewError> {
    if review.status != "succeeded" {
        return Err(ReviewError::NotReady(review.status.clone()));
    }
    let dir = render::directory(&config.data_dir);
    let stored = store::export(pool, review.id, format).await?;
    if let Some(export) = &stored {
        let path = dir.join(&export.file_name);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok((path, export.clone()));
        }
    }
    let rendered = render::render(pool, review, format, &dir, None).await?;
    if let Some(previous) = &stored {
        if previous.sha256 != rendered.sha256 {
            tracing::warn!(
                review = review.id,
                %format,
                stored = %previous.sha256,
                rendered = %rendered.sha256,
                "a re-rendered review export differs from the stored one"
            );
        }
    }
    let export = store::save_export(
        pool,
        review.id,
        format,
        &rendered.file_name,
        rendered.bytes,
        &rendered.sha256,
    )
    .await?;
    Ok((dir.join(&rendered.file_name), export))
}

/// Starts the generation worker and the schedule loop.
pub fn spawn(pool: PgPool, config: Arc<Config>, tasks: &TaskTracker, cancel: &CancellationToken) {
    let worker_cancel = cancel.clone();
    let worker_pool = pool.clone();
    let worker_config = config.clone();
    tasks.spawn(async move {
        loop {
            let next = tokio::select! {
                () = worker_cancel.cancelled() => break,
                next = run_next(&worker_pool, &worker_config) => next,
            };
            let idle = match next {
                Ok(Some(review)) => {
                    tracing::info!(review = review.id, status = %review.status, "review generated");
                    false
                }
                Ok(None) => true,
                Err(err) => {
                    tracing::warn!(error = %err, "the review worker could not reach the database");
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = worker_cancel.cancelled() => break,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
    });
    super::schedule::spawn(pool, config, tasks, cancel);
}

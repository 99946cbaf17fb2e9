//! The CronJob controller, as upstream's (v2): at each time the schedule
//! names (in `timeZone`, else UTC) it creates a Job from the template,
//! named `<cronjob>-<minutes since the epoch>`, unless the time is older
//! than `startingDeadlineSeconds`, the CronJob is suspended, or
//! `concurrencyPolicy: Forbid` and a Job still runs (`Replace` deletes
//! it first). Finished Jobs beyond the history limits are deleted.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Resource;
use serde_json::json;

use crate::common::{controlled_by, owner_reference, Error};
use crate::job::finished_at;

const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this are not all reported, as upstream.
const MAX_MISSED: usize = 100;

struct Context {
    client: kube::Client,
    jobs: Store<Job>,
    events: Recorder,
}

pub async fn run(client: kube::Client) {
    let (jobs, writer) = reflector::store();
    let job_events = watcher(Api::<Job>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer).touched_objects();
    let events = Recorder::new(client.clone(), Reporter { controller: "cronjob-controller".into(), instance: None });
    let context = Arc::new(Context { client: client.clone(), jobs, events });
    let controller = Controller::new(Api::<CronJob>::all(client), watcher::Config::default()).owns_stream(job_events);
    crate::common::run("cronjob", controller, reconcile, context).await;
}

/// A schedule as upstream's parser takes it: five fields or a `@` macro.
pub fn parse_schedule(schedule: &str) -> Result<Cron, String> {
    if schedule.contains("TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    let schedule = match schedule.trim() {
        "@every" => return Err("unsupported".into()),
        "@midnight" => "@daily",
        s => s,
    };
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(schedule).map_err(|e| e.to_string())
}

/// The schedule's times after `since` up to `now`: the latest, and how many.
fn missed(cron: &Cron, tz: Tz, since: DateTime<Utc>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, usize) {
    let mut latest = None;
    let mut count = 0;
    for t in cron.iter_after(since.with_timezone(&tz)) {
        let t = t.with_timezone(&Utc);
        if t > now {
            break;
        }
        latest = Some(t);
        count += 1;
        if count > MAX_MISSED {
            // Too many to walk: the latest is the one before now.
            latest = cron.find_previous_occurrence(&now.with_timezone(&tz), true).ok().map(|t| t.with_timezone(&Utc));
            break;
        }
    }
    (latest, count)
}

/// Where the schedule stands at `now`: the latest time it was due and not
/// yet run (within startingDeadlineSeconds), how many times were missed,
/// whether that latest time is already too late to start, and how long
/// until the next time (None: it never comes).
pub fn due(spec: &CronJobSpec, cron: &Cron, tz: Tz, last_schedule: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, usize, bool, Option<Duration>) {
    let next = cron.find_next_occurrence(&now.with_timezone(&tz), false).ok().map(|t| (t.with_timezone(&Utc) - now).to_std().unwrap_or_default() + Duration::from_millis(100));
    let mut earliest = last_schedule.unwrap_or(created);
    // Deadlines beyond what a time can hold: no limit (a negative one is in the future).
    let deadline = spec.starting_deadline_seconds.and_then(chrono::TimeDelta::try_seconds);
    if let Some(since) = deadline.and_then(|d| now.checked_sub_signed(d)) {
        earliest = earliest.max(since);
    }
    let (latest, count) = missed(cron, tz, earliest, now);
    let too_late = latest.zip(deadline).is_some_and(|(t, d)| t.checked_add_signed(d).is_some_and(|end| end < now));
    (latest, count, too_late, next)
}

fn reference(cj: &CronJob) -> ObjectReference {
    cj.object_ref(&())
}

fn job_reference(job: &Job) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "namespace": job.metadata.namespace, "uid": job.metadata.uid, "resourceVersion": job.metadata.resource_version})
}

async fn event(ctx: &Context, cj: &CronJob, warning: bool, reason: &str, note: String) {
    let event = Event { type_: if warning { EventType::Warning } else { EventType::Normal }, reason: reason.into(), note: Some(note), action: reason.into(), secondary: None };
    if let Err(e) = ctx.events.publish(&event, &reference(cj)).await {
        tracing::debug!("cronjob event: {e}");
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.jobs).await.map_err(|e| Error(e.to_string()))?;
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (ns, name) = (cj.metadata.namespace.clone().unwrap_or_default(), cj.metadata.name.clone().unwrap_or_default());
    let spec = cj.spec.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned = controlled_by(&ctx.jobs, &cj.metadata);
    owned.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let status = cj.status.clone().unwrap_or_default();
    let mut last_schedule = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut last_successful = status.last_successful_time.as_ref().map(|t| t.0);

    // Finished Jobs leave the active list; the oldest beyond the limits go.
    let was_active: Vec<String> = status.active.iter().flatten().filter_map(|r| r.uid.clone()).collect();
    for job in owned.iter().filter(|j| finished_at(j).is_some() && was_active.contains(j.metadata.uid.as_ref().unwrap_or(&String::new()))) {
        let complete = job.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0);
        let condition = if complete.is_some() { "Complete" } else { "Failed" };
        event(&ctx, &cj, false, "SawCompletedJob", format!("Saw completed job: {}, condition: {condition}", job.metadata.name.as_deref().unwrap_or_default())).await;
        last_successful = last_successful.max(complete);
    }
    for (failed, limit) in [(false, spec.successful_jobs_history_limit.unwrap_or(3)), (true, spec.failed_jobs_history_limit.unwrap_or(1))] {
        let finished: Vec<&Arc<Job>> = owned.iter().filter(|j| finished_at(j).is_some() && j.status.as_ref().and_then(|s| s.completion_time.as_ref()).is_none() == failed).collect();
        for job in finished.iter().take(finished.len().saturating_sub(limit.max(0) as usize)) {
            let job_name = job.metadata.name.as_deref().unwrap_or_default();
            if jobs_api.delete(job_name, &DeleteParams::background()).await.is_ok() {
                event(&ctx, &cj, false, "SuccessfulDelete", format!("Deleted job {job_name}")).await;
            }
        }
    }
    let mut active: Vec<&Arc<Job>> = owned.iter().filter(|j| finished_at(j).is_none() && j.metadata.deletion_timestamp.is_none()).collect();

    // The schedule.
    let tz: Tz = match spec.time_zone.as_deref().map(Tz::from_str).transpose() {
        Ok(tz) => tz.unwrap_or(Tz::UTC),
        Err(_) => {
            event(&ctx, &cj, true, "UnknownTimeZone", format!("invalid timeZone: {:?}", spec.time_zone.unwrap_or_default())).await;
            return Ok(Action::await_change());
        }
    };
    let cron = match parse_schedule(&spec.schedule) {
        Ok(c) => c,
        Err(e) => {
            event(&ctx, &cj, true, "UnparseableSchedule", format!("unparseable schedule: {:?} : {e}", spec.schedule)).await;
            return Ok(Action::await_change());
        }
    };
    let now = Utc::now();
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let (due, count, too_late, mut requeue) = due(&spec, &cron, tz, last_schedule, created, now);
    if count > MAX_MISSED {
        event(&ctx, &cj, true, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into()).await;
    }
    if let Some(scheduled) = due.filter(|_| spec.suspend != Some(true)) {
        let job_name = format!("{name}-{}", scheduled.timestamp() / 60);
        let already = owned.iter().any(|j| j.metadata.name.as_deref() == Some(job_name.as_str()));
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if too_late {
            event(&ctx, &cj, true, "MissSchedule", format!("Missed scheduled time to start a job: {}", scheduled.to_rfc3339())).await;
        } else if already {
            last_schedule = last_schedule.max(Some(scheduled));
        } else if policy == "Forbid" && !active.is_empty() {
            event(&ctx, &cj, false, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()).await;
            requeue = Some(Duration::from_secs(1)).min(requeue);
        } else {
            if policy == "Replace" {
                for job in active.drain(..) {
                    let job_name = job.metadata.name.as_deref().unwrap_or_default();
                    if jobs_api.delete(job_name, &DeleteParams::background()).await.is_ok() {
                        event(&ctx, &cj, false, "SuccessfulDelete", format!("Deleted job {job_name}")).await;
                    }
                }
            }
            let template = spec.job_template.clone();
            let mut meta = template.metadata.unwrap_or_default();
            meta.name = Some(job_name.clone());
            meta.namespace = Some(ns.clone());
            meta.owner_references = Some(vec![owner_reference(&cj.metadata, "batch/v1", "CronJob")]);
            meta.annotations.get_or_insert_with(Default::default).insert(SCHEDULED_AT.into(), scheduled.with_timezone(&tz).to_rfc3339());
            let job = Job { metadata: meta, spec: template.spec, status: None };
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(job) => {
                    event(&ctx, &cj, false, "SuccessfulCreate", format!("Created job {job_name}")).await;
                    owned.push(Arc::new(job));
                    last_schedule = Some(scheduled);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => last_schedule = Some(scheduled),
                Err(e) => {
                    event(&ctx, &cj, true, "FailedCreate", format!("Error creating job: {e}")).await;
                    return Err(e.into());
                }
            }
        }
    }

    let active_refs: Vec<serde_json::Value> =
        owned.iter().filter(|j| finished_at(j).is_none() && j.metadata.deletion_timestamp.is_none()).map(|j| job_reference(j)).collect();
    let stamp = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let next = json!({"active": if active_refs.is_empty() { serde_json::Value::Null } else { json!(active_refs) }, "lastScheduleTime": stamp(last_schedule), "lastSuccessfulTime": stamp(last_successful)});
    let current = json!({
        "active": status.active.as_ref().filter(|a| !a.is_empty()).map(|a| a.iter().map(|r| r.uid.clone()).collect::<Vec<_>>()),
        "lastScheduleTime": stamp(status.last_schedule_time.map(|t| t.0)),
        "lastSuccessfulTime": stamp(status.last_successful_time.map(|t| t.0)),
    });
    let wanted = json!({
        "active": next["active"].as_array().map(|a| a.iter().map(|r| r["uid"].clone()).collect::<Vec<_>>()),
        "lastScheduleTime": next["lastScheduleTime"],
        "lastSuccessfulTime": next["lastSuccessfulTime"],
    });
    if current != wanted {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": next}))).await?;
    }
    // A schedule whose next time is years away (`0 0 29 2 *`) is looked at again sooner.
    Ok(requeue.map_or(Action::await_change(), crate::common::requeue))
}

/// Every decision of one sync, on the objects alone: for the fuzz targets.
pub fn fuzz(cj: &CronJob, jobs: &[Job], now: DateTime<Utc>) {
    let spec = cj.spec.clone().unwrap_or_default();
    for job in jobs {
        let _ = finished_at(job);
    }
    let Ok(tz) = spec.time_zone.as_deref().map(Tz::from_str).transpose() else { return };
    let Ok(cron) = parse_schedule(&spec.schedule) else { return };
    let last = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let (latest, _, _, next) = due(&spec, &cron, tz.unwrap_or(Tz::UTC), last, created, now);
    if let Some(t) = latest {
        let _ = (format!("{}", t.timestamp() / 60), t.with_timezone(&tz.unwrap_or(Tz::UTC)).to_rfc3339());
    }
    let _ = next.map(crate::common::requeue);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn schedules_parse_as_upstreams_standard_parser() {
        for ok in ["*/1 * * * *", "0 9 * * 1-5", "@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually", "30 4 1,15 * 5", "0 0 * JAN,FEB MON"] {
            assert!(parse_schedule(ok).is_ok(), "{ok}");
        }
        for bad in ["* * * *", "0 0 0 * * * *", "61 * * * *", "CRON_TZ=UTC 0 * * * *", "TZ=UTC 0 * * * *", "nonsense"] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missed_times_take_the_latest_in_the_time_zone() {
        // Deadlines past what a time holds (chrono panicked on them) are no limit.
        let every = parse_schedule("* * * * *").unwrap();
        let spec = CronJobSpec { starting_deadline_seconds: Some(i64::MAX), ..Default::default() };
        let (latest, _, too_late, next) = due(&spec, &every, Tz::UTC, None, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:10:30Z"));
        assert_eq!((latest, too_late), (Some(at("2026-01-01T00:10:00Z")), false));
        assert!(next.is_some());
        let spec = CronJobSpec { starting_deadline_seconds: Some(i64::MIN), ..Default::default() };
        let _ = due(&spec, &every, Tz::UTC, None, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:10:30Z"));
        // A schedule that never fires (February 30th) waits for a change.
        let never = parse_schedule("0 0 30 2 *").unwrap();
        let (latest, _, _, next) = due(&CronJobSpec::default(), &never, Tz::UTC, None, at("2026-01-01T00:00:00Z"), at("2026-06-01T00:00:00Z"));
        assert_eq!((latest, next), (None, None));

        let cron = parse_schedule("0 9 * * *").unwrap();
        let (latest, count) = missed(&cron, Tz::UTC, at("2026-01-01T00:00:00Z"), at("2026-01-03T10:00:00Z"));
        assert_eq!((latest, count), (Some(at("2026-01-03T09:00:00Z")), 3));
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let (latest, _) = missed(&cron, tokyo, at("2026-01-01T00:00:00Z"), at("2026-01-03T10:00:00Z"));
        assert_eq!(latest, Some(at("2026-01-03T00:00:00Z")), "09:00 in Tokyo is 00:00 UTC");
        let every = parse_schedule("* * * * *").unwrap();
        let (latest, count) = missed(&every, Tz::UTC, at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:30Z"));
        assert_eq!((latest, count > MAX_MISSED), (Some(at("2026-01-02T00:00:00Z")), true));
        assert_eq!(missed(&every, Tz::UTC, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:30Z")), (None, 0));
    }
}

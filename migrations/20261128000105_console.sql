-- The console: the daily posture history behind the overview's trend, and the indexes its lists
-- need at 100,000 workloads and 1,000,000 findings.

-- One row per UTC day and scope ('all' = every live workload): the posture score (the mean
-- grade of the live graded workloads, A = 4 … F = 0) and the open, non-waived findings by
-- severity at the end of that day (today: as last refreshed).
create table posture_snapshots (
    day               date not null,
    scope             text not null default 'all',
    -- null when no live workload was graded that day.
    score             double precision,
    workloads_graded  integer not null default 0,
    grade_a           integer not null default 0,
    grade_b           integer not null default 0,
    grade_c           integer not null default 0,
    grade_d           integer not null default 0,
    grade_f           integer not null default 0,
    open_critical     integer not null default 0,
    open_high         integer not null default 0,
    open_medium       integer not null default 0,
    open_low          integer not null default 0,
    open_info         integer not null default 0,
    -- 'live' (from the workloads' maintained scores) or 'backfill' (rebuilt from the findings'
    -- first_seen / resolved_at history).
    origin            text not null,
    taken_at          timestamptz not null default now(),
    constraint posture_snapshots_pkey primary key (scope, day),
    constraint posture_snapshots_origin_check check (origin in ('live', 'backfill')),
    constraint posture_snapshots_score_check check (score is null or (score >= 0 and score <= 4))
);

-- Free-text search on workload names (`ilike '%…%'`) through trigrams.
create extension if not exists pg_trgm;
create index workloads_name_trgm_idx on workloads using gin (name gin_trgm_ops);

-- The list sorted by risk, keyset on (risk desc, id asc): a row comparison on (-risk, id) walks
-- one index in both directions.
create index workloads_risk_keyset_idx on workloads ((-risk_score), id);
create index workloads_severity_risk_idx on workloads (worst_severity, (-risk_score), id);
create index workloads_severity_idx on workloads (worst_severity, id);

-- The overview's one pass (workloads, running instances, grades and open findings per stage)
-- reads only this index while the table's pages are all-visible.
create index workloads_overview_idx on workloads (stage)
    include (instances_running, grade, findings_critical, findings_high, findings_medium,
             findings_low, findings_info);

-- Findings grouped by check and the drill-down to the workloads of one check read only this
-- index (open findings are a fraction of all findings, which are never deleted).
create index findings_open_check_workload_idx on findings (check_id, workload_id)
    include (severity, layer, waiver_id) where status = 'open';

-- The open findings counted per check (and per check and severity, check and layer, check,
-- severity and layer: a null severity or layer means every one), refreshed every minute by the
-- server (findings::summary), so the findings page reads a few hundred rows instead of every
-- open finding.
create table check_summaries (
    check_id   text not null,
    severity   text,
    layer      text,
    -- Open findings, those a waiver covers, and the workloads with a non-waived one.
    findings   integer not null,
    waived     integer not null,
    workloads  integer not null,
    -- The worst severity among them.
    worst      text not null
);
create unique index check_summaries_key
    on check_summaries (check_id, coalesce(severity, ''), coalesce(layer, ''));

create table check_summaries_refresh (
    id            boolean primary key default true,
    refreshed_at  timestamptz not null,
    constraint check_summaries_refresh_single check (id)
);

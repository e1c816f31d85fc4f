-- Periodic reviews: a snapshot of the estate taken once (its tables stored row by row), the
-- exports rendered from that snapshot (each stored with its sha256), the sign-offs, and the
-- slots each configured schedule has fired for.

create table reviews (
    id                  bigint generated always as identity primary key,
    -- The team the review is about; null for the whole estate.
    team_id             bigint,
    -- The team's name when the review was asked for (a renamed team keeps old reviews readable).
    team_name           text,
    -- manual (console / API), cli, schedule
    trigger             text not null,
    -- The configured schedule that fired it (its key), when scheduled.
    schedule_key        text,
    requested_by        text not null,
    -- The formats rendered right after the snapshot; the others are rendered on first download.
    formats             text[] not null default '{csv,json,xlsx,html}',
    status              text not null default 'queued',
    -- What the generation is doing now, and how far it is.
    phase               text not null default '',
    progress_percent    integer not null default 0,
    rows_done           bigint not null default 0,
    error               text,
    -- The snapshot's time (the database's clock at the start of its transaction).
    taken_at            timestamptz,
    -- The review of the same scope this one is compared with (new / resolved since).
    previous_review_id  bigint,
    -- Headline numbers and the row count of every table.
    summary             jsonb not null default '{}'::jsonb,
    idempotency_key     text,
    created_at          timestamptz not null default now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    -- Bumped while a worker generates; a running review whose worker stopped beating is retried.
    heartbeat_at        timestamptz,
    constraint reviews_team_fkey foreign key (team_id) references teams (id),
    constraint reviews_previous_fkey foreign key (previous_review_id) references reviews (id),
    constraint reviews_trigger_check check (trigger in ('manual', 'cli', 'schedule')),
    constraint reviews_status_check check (status in ('queued', 'running', 'succeeded', 'failed')),
    constraint reviews_progress_check check (progress_percent between 0 and 100),
    constraint reviews_formats_check check (formats <@ array['csv', 'json', 'xlsx', 'html']),
    constraint reviews_idempotency_key unique (idempotency_key)
);
create index reviews_queue_idx on reviews (id) where status in ('queued', 'running');
create index reviews_scope_idx on reviews (coalesce(team_id, 0), taken_at desc, id desc)
    where status = 'succeeded';

-- The snapshot: every row of every table of a review, computed once at taken_at. `key` is the
-- finding id in the finding tables (so two snapshots compare by primary key) and the row's
-- position elsewhere; `cells` is a JSON array in the table's column order.
create table review_rows (
    review_id  bigint not null,
    tbl        text not null,
    key        bigint not null,
    cells      jsonb not null,
    constraint review_rows_pkey primary key (review_id, tbl, key),
    constraint review_rows_review_fkey foreign key (review_id) references reviews (id) on delete cascade
);

-- Each rendered file, kept under the data directory; rendering is deterministic, so a missing
-- file is rendered again with the same sha256.
create table review_exports (
    review_id     bigint not null,
    format        text not null,
    file_name     text not null,
    bytes         bigint not null,
    sha256        text not null,
    generated_at  timestamptz not null default now(),
    constraint review_exports_pkey primary key (review_id, format),
    constraint review_exports_review_fkey foreign key (review_id) references reviews (id) on delete cascade,
    constraint review_exports_format_check check (format in ('csv', 'json', 'xlsx', 'html'))
);

-- A team owner (a member of the review's team, or an admin) signs the review off.
create table review_signoffs (
    id         bigint generated always as identity primary key,
    review_id  bigint not null,
    user_id    bigint not null,
    user_name  text not null,
    comment    text not null default '',
    signed_at  timestamptz not null default now(),
    constraint review_signoffs_review_fkey foreign key (review_id) references reviews (id) on delete cascade,
    constraint review_signoffs_user_fkey foreign key (user_id) references users (id),
    constraint review_signoffs_once_key unique (review_id, user_id)
);

-- One row per schedule and due time: whichever replica inserts it first starts the review, and
-- a restart does not start it again.
create table review_schedule_runs (
    schedule_key  text not null,
    due_at        timestamptz not null,
    review_id     bigint,
    fired_at      timestamptz not null default now(),
    constraint review_schedule_runs_pkey primary key (schedule_key, due_at),
    constraint review_schedule_runs_review_fkey foreign key (review_id) references reviews (id) on delete set null
);

-- The build and store stages of an image's lifecycle, reported from outside the engines: CI build
-- reports (with a vulnerability summary of their scan) and registry notifications.

-- One build of an image digest by one pipeline run (idempotent on the pair).
create table build_reports (
    id                 bigint generated always as identity primary key,
    digest             text not null,
    image_reference    text not null,
    -- The pipeline run that built it: the run id given, else the pipeline URL.
    pipeline_run       text not null,
    pipeline_url       text,
    source_repository  text,
    source_commit      text,
    builder            text,
    built_at           timestamptz not null,
    -- Whether a scan report came with it; the counts are null without one.
    scanned            boolean not null default false,
    scanner            text,
    vulns_critical     integer,
    vulns_high         integer,
    vulns_medium       integer,
    vulns_low          integer,
    vulns_unknown      integer,
    -- The worst vulnerabilities (id, package, versions, severity, title), at most a few dozen.
    top_vulnerabilities jsonb not null default '[]'::jsonb,
    -- Names of image ENV variables that hold a secret-looking value (never the values).
    env_secrets        jsonb not null default '[]'::jsonb,
    reported_by        text not null,
    reported_at        timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    constraint build_reports_digest_fkey foreign key (digest) references images (digest),
    constraint build_reports_run_key unique (digest, pipeline_run),
    constraint build_reports_counts_check
        check (scanned = (vulns_critical is not null))
);
create index build_reports_digest_idx on build_reports (digest, built_at desc, id desc);

-- Every registry notification event kept (push, pull, delete of manifests), never updated.
create table registry_events (
    id            bigint generated always as identity primary key,
    -- The notification's own id: a retried delivery is stored once.
    event_id      text not null,
    registry      text not null,
    repository    text not null,
    digest        text,
    tag           text,
    action        text not null,
    media_type    text,
    actor         text,
    source_addr   text,
    at            timestamptz not null,
    received_at   timestamptz not null default now(),
    reported_by   text not null,
    constraint registry_events_action_check check (action in ('push', 'pull', 'delete')),
    constraint registry_events_event_key unique (registry, event_id)
);
create index registry_events_digest_idx on registry_events (digest, at, id);

-- Where each digest is stored now: one row per registry and repository.
create table registry_images (
    registry      text not null,
    repository    text not null,
    digest        text not null,
    tags          text[] not null default '{}',
    first_pushed  timestamptz,
    last_pushed   timestamptz,
    last_pulled   timestamptz,
    pulls         bigint not null default 0,
    -- A delete event removed the manifest from the registry.
    removed_at    timestamptz,
    constraint registry_images_pkey primary key (registry, repository, digest),
    constraint registry_images_digest_fkey foreign key (digest) references images (digest)
);
create index registry_images_digest_idx on registry_images (digest);

-- What the image inventory lists and filters on, kept with each image.
alter table images
    add column build_report_id  bigint,
    add column vulns_critical   integer,
    add column vulns_high       integer,
    -- Registries the digest is stored in now (not deleted).
    add column registries       text[] not null default '{}',
    add constraint images_build_report_fkey foreign key (build_report_id) references build_reports (id);
create index images_critical_idx on images (digest) where vulns_critical > 0;

-- The digests the build/store/update controls were last judged for, per workload: a workload
-- whose digests changed since is judged again.
alter table workloads add column image_checked_digests text[];

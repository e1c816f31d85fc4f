-- The inventory shared by every collector: workloads (the unit people own and fix), their
-- instances (containers, pods), images by digest, and the append-only lifecycle history.

create table workloads (
    id                bigint generated always as identity primary key,
    source_id         bigint not null,
    -- Kubernetes namespace; the Compose project for a Compose service; '' otherwise.
    namespace         text not null default '',
    -- Deployment, StatefulSet, DaemonSet, CronJob, Job, Pod, ReplicaSet; ComposeService or
    -- Container for Docker.
    kind              text not null,
    name              text not null,
    -- The Kubernetes object's uid, to tell a re-created object.
    uid               text,
    stage             text not null,
    stage_since       timestamptz not null default now(),
    labels            jsonb not null default '{}'::jsonb,
    annotations       jsonb not null default '{}'::jsonb,
    -- The declared object (controller with its pod template), secret values removed.
    declared          jsonb,
    -- The image references and digests of the current version, and a hash of its spec: a change
    -- of either is an update.
    images            text[] not null default '{}',
    image_digests     text[] not null default '{}',
    spec_hash         text,
    instances_total   integer not null default 0,
    instances_running integer not null default 0,
    first_seen        timestamptz not null default now(),
    last_seen         timestamptz not null default now(),
    -- Docker: when the last instance went away (retired after the grace period).
    gone_since        timestamptz,
    retired_at        timestamptz,
    updated_at        timestamptz not null default now(),
    constraint workloads_source_fkey foreign key (source_id) references sources (id),
    constraint workloads_identity_key unique (source_id, namespace, kind, name),
    constraint workloads_stage_check check (stage in ('build', 'store', 'deploy', 'run', 'update', 'retire'))
);
create index workloads_stage_idx on workloads (stage, id);
create index workloads_namespace_idx on workloads (namespace, id);
create index workloads_kind_idx on workloads (kind, id);

create table instances (
    id             bigint generated always as identity primary key,
    workload_id    bigint not null,
    source_id      bigint not null,
    -- Docker container id or Kubernetes pod uid.
    external_id    text not null,
    name           text not null,
    -- The engine's own state word (running, exited, Pending, Running, …).
    state          text not null,
    running        boolean not null default false,
    image_ref      text,
    image_digest   text,
    node           text,
    labels         jsonb not null default '{}'::jsonb,
    restart_count  integer not null default 0,
    -- The normalized spec the posture checks read (never secret values).
    spec           jsonb,
    -- The engine's own document (inspect JSON, pod JSON), secret values removed; kept as evidence.
    raw            jsonb not null,
    started_at     timestamptz,
    first_seen     timestamptz not null default now(),
    last_seen      timestamptz not null default now(),
    removed_at     timestamptz,
    constraint instances_workload_fkey foreign key (workload_id) references workloads (id),
    constraint instances_source_fkey foreign key (source_id) references sources (id),
    constraint instances_source_external_key unique (source_id, external_id)
);
create index instances_workload_idx on instances (workload_id) where removed_at is null;
create index instances_digest_idx on instances (image_digest) where removed_at is null;

create table images (
    -- sha256:… — the repository digest when known, else the local image id.
    digest        text primary key,
    image_id      text,
    created_at    timestamptz,
    size_bytes    bigint,
    os            text,
    architecture  text,
    -- The image config as far as checks need it (User, exposed ports, labels, env names only).
    config        jsonb not null default '{}'::jsonb,
    first_seen    timestamptz not null default now(),
    last_seen     timestamptz not null default now()
);

create table image_references (
    digest      text not null,
    reference   text not null,
    -- Where it was seen: an engine's store, a registry, a build report.
    source_id   bigint,
    first_seen  timestamptz not null default now(),
    last_seen   timestamptz not null default now(),
    constraint image_references_digest_fkey foreign key (digest) references images (digest),
    constraint image_references_source_fkey foreign key (source_id) references sources (id),
    constraint image_references_key unique (digest, reference)
);
create index image_references_reference_idx on image_references (reference);

-- Every stage transition of every workload, never updated or deleted.
create table lifecycle_events (
    id              bigint generated always as identity primary key,
    workload_id     bigint not null,
    at              timestamptz not null default now(),
    from_stage      text,
    to_stage        text not null,
    cause           text not null,
    digests_before  text[] not null default '{}',
    digests_after   text[] not null default '{}',
    details         jsonb not null default '{}'::jsonb,
    constraint lifecycle_events_workload_fkey foreign key (workload_id) references workloads (id),
    constraint lifecycle_events_to_stage_check check (to_stage in ('build', 'store', 'deploy', 'run', 'update', 'retire'))
);
create index lifecycle_events_workload_idx on lifecycle_events (workload_id, at, id);

-- What happened at run time (exec sessions, restarts, OOM kills, health changes, drift).
create table runtime_events (
    id           bigint generated always as identity primary key,
    source_id    bigint not null,
    workload_id  bigint,
    instance_id  bigint,
    at           timestamptz not null default now(),
    kind         text not null,
    severity     text not null default 'info',
    summary      text not null,
    details      jsonb not null default '{}'::jsonb,
    constraint runtime_events_source_fkey foreign key (source_id) references sources (id),
    constraint runtime_events_workload_fkey foreign key (workload_id) references workloads (id),
    constraint runtime_events_instance_fkey foreign key (instance_id) references instances (id),
    constraint runtime_events_severity_check check (severity in ('info', 'low', 'medium', 'high', 'critical'))
);
create index runtime_events_workload_idx on runtime_events (workload_id, at desc);
create index runtime_events_at_idx on runtime_events (at desc, id desc);

create function refuse_history_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_name using errcode = 'insufficient_privilege';
end;
$$;

create trigger lifecycle_events_append_only
    before update or delete on lifecycle_events
    for each row execute function refuse_history_change();

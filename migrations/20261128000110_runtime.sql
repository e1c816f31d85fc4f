-- Run-stage monitoring: indexes for the event list's filters, the process baseline of each
-- workload, what the drift sampler and the Kubernetes observer saw last of each instance, and
-- incidents opened from a runtime event.

create index runtime_events_id_idx on runtime_events (id desc);
create index runtime_events_workload_id_idx on runtime_events (workload_id, id desc);
create index runtime_events_source_id_idx on runtime_events (source_id, id desc);
create index runtime_events_kind_id_idx on runtime_events (kind, id desc);
create index runtime_events_severity_id_idx on runtime_events (severity, id desc);
create index runtime_events_instance_kind_idx on runtime_events (instance_id, kind, at desc);

-- The process names a workload is expected to run: learned while `learning_until` is in the
-- future (its first hour of running by default), or approved by a responder.
create table process_baselines (
    workload_id     bigint primary key,
    status          text not null default 'learning',
    learning_until  timestamptz not null,
    processes       text[] not null default '{}',
    approved_by     text,
    approved_at     timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint process_baselines_workload_fkey foreign key (workload_id) references workloads (id),
    constraint process_baselines_status_check check (status in ('learning', 'active'))
);

-- What was last observed of an instance (drifted process names, drifted paths, restart counts,
-- debug containers, image and spec drift), so that only a change is reported again.
create table runtime_observations (
    instance_id  bigint primary key,
    state        jsonb not null default '{}'::jsonb,
    sampled_at   timestamptz,
    updated_at   timestamptz not null default now(),
    constraint runtime_observations_instance_fkey foreign key (instance_id) references instances (id)
);

alter table incidents
    drop constraint incidents_origin_check,
    add constraint incidents_origin_check check (origin in ('manual', 'workload', 'finding', 'event')),
    add column event_id bigint,
    add constraint incidents_event_fkey foreign key (event_id) references runtime_events (id);

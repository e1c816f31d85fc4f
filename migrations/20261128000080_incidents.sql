-- Incidents: a case with a workflow (open → isolated → analysing → fixed → restored → closed),
-- its affected workloads, its timeline of actions (also the action queue), the saved pre-state of
-- every isolated instance, and the evidence captured at isolation.

create table incidents (
    id               bigint generated always as identity primary key,
    title            text not null,
    severity         text not null,
    state            text not null default 'open',
    -- How it was opened: from a workload, from a finding, or by hand.
    origin           text not null default 'manual',
    assignee         text,
    opened_by        text not null,
    -- Analyse: notes and the attack path as the analyst understands it.
    analysis_notes   text not null default '',
    attack_path      text not null default '',
    -- Fix: the findings resolved and / or the image digest deployed.
    fixed_findings   bigint[] not null default '{}',
    fixed_digest     text,
    finding_ids      bigint[] not null default '{}',
    idempotency_key  text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    closed_at        timestamptz,
    constraint incidents_severity_check check (severity in ('low', 'medium', 'high', 'critical')),
    constraint incidents_state_check check (state in ('open', 'isolated', 'analysing', 'fixed', 'restored', 'closed')),
    constraint incidents_origin_check check (origin in ('manual', 'workload', 'finding')),
    constraint incidents_idempotency_key unique (idempotency_key)
);
create index incidents_state_idx on incidents (state, id);

create table incident_workloads (
    incident_id  bigint not null,
    workload_id  bigint not null,
    constraint incident_workloads_pkey primary key (incident_id, workload_id),
    constraint incident_workloads_incident_fkey foreign key (incident_id) references incidents (id),
    constraint incident_workloads_workload_fkey foreign key (workload_id) references workloads (id)
);
create index incident_workloads_workload_idx on incident_workloads (workload_id);

-- The timeline: every step by whom, when, with a note. Isolate and restore are queued here
-- (status queued → running → succeeded / failed) and executed by the worker.
create table incident_actions (
    id               bigint generated always as identity primary key,
    incident_id      bigint not null,
    kind             text not null,
    status           text not null,
    actor            text not null,
    note             text not null default '',
    idempotency_key  text,
    from_state       text,
    to_state         text,
    -- What was asked (override, fields) and what came out (per-instance outcome, verification).
    request          jsonb not null default '{}'::jsonb,
    result           jsonb not null default '{}'::jsonb,
    error            text,
    attempts         integer not null default 0,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    constraint incident_actions_incident_fkey foreign key (incident_id) references incidents (id),
    constraint incident_actions_kind_check check (kind in ('open', 'isolate', 'analysis', 'fix', 'restore', 'close')),
    constraint incident_actions_status_check check (status in ('queued', 'running', 'succeeded', 'failed')),
    constraint incident_actions_idempotency_key unique (incident_id, idempotency_key)
);
create index incident_actions_incident_idx on incident_actions (incident_id, id);
create index incident_actions_queue_idx on incident_actions (id) where status in ('queued', 'running');

-- The exact pre-state of every instance an isolation touched, saved before it acts; restore puts
-- back exactly this.
create table incident_targets (
    id            bigint generated always as identity primary key,
    incident_id   bigint not null,
    instance_id   bigint not null,
    driver        text not null,
    external_id   text not null,
    name          text not null,
    -- 'disconnect' (networks removed) or 'pause' (host / none / container: networking).
    method        text not null,
    pre_state     jsonb not null,
    isolated_at   timestamptz,
    isolation     jsonb,
    restored_at   timestamptz,
    restoration   jsonb,
    created_at    timestamptz not null default now(),
    constraint incident_targets_incident_fkey foreign key (incident_id) references incidents (id),
    constraint incident_targets_instance_fkey foreign key (instance_id) references instances (id),
    constraint incident_targets_instance_key unique (incident_id, instance_id)
);

create table incident_evidence (
    id           bigint generated always as identity primary key,
    incident_id  bigint not null,
    target_id    bigint,
    -- inspect, processes, diff, logs
    kind         text not null,
    content      jsonb not null,
    sha256       text not null,
    captured_at  timestamptz not null default now(),
    constraint incident_evidence_incident_fkey foreign key (incident_id) references incidents (id),
    constraint incident_evidence_target_fkey foreign key (target_id) references incident_targets (id)
);
create index incident_evidence_incident_idx on incident_evidence (incident_id, id);

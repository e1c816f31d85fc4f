-- Several servers on one database: leases say which replica runs what (a source's collector, a
-- singleton schedule) and until when; incident actions record the replica that runs them and
-- its last heartbeat, so that only the actions of a replica that died are taken over.

create table leases (
    -- What is held: 'source:docker:unix:///var/run/docker.sock', 'job:waivers', …
    name         text primary key,
    -- The replica holding it (host name, process id and a random suffix).
    holder       text not null,
    acquired_at  timestamptz not null default now(),
    renewed_at   timestamptz not null default now(),
    -- After this instant (database clock) any replica may take it over.
    expires_at   timestamptz not null
);

alter table incident_actions
    add column claimed_by   text,
    add column heartbeat_at timestamptz;

-- The recovery sweep looks only at running actions.
create index incident_actions_running_idx on incident_actions (heartbeat_at) where status = 'running';

-- The workload list at 100,000 workloads: the source filter in id order (keyset pages).
create index workloads_source_idx on workloads (source_id, id);

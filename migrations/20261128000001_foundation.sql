-- Foundation: where inventory comes from. Every collector (Docker engine, Kubernetes context,
-- file import) is one source with its collector status.
create table sources (
    id              bigint generated always as identity primary key,
    kind            text not null,
    name            text not null,
    -- The endpoint with any credentials removed.
    endpoint        text not null default '',
    connected       boolean not null default false,
    last_event_at   timestamptz,
    last_resync_at  timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    -- Object counts of the last resync, by kind (containers, images, pods, …).
    counts          jsonb not null default '{}'::jsonb,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint sources_kind_check check (kind in ('docker', 'kubernetes', 'file')),
    constraint sources_kind_name_key unique (kind, name)
);

-- Ownership: teams, the five responsibility layers, the rules that resolve each workload's owner
-- per layer, the resolved owners with their provenance, and the history of every change.

-- Kubernetes namespaces as collected (their labels and annotations route ownership).
create table namespaces (
    source_id    bigint not null,
    name         text not null,
    labels       jsonb not null default '{}'::jsonb,
    annotations  jsonb not null default '{}'::jsonb,
    first_seen   timestamptz not null default now(),
    last_seen    timestamptz not null default now(),
    removed_at   timestamptz,
    primary key (source_id, name),
    constraint namespaces_source_fkey foreign key (source_id) references sources (id)
);

create table teams (
    id          bigint generated always as identity primary key,
    name        text not null,
    -- development, operations, security, platform, infrastructure
    kind        text not null,
    contact     text not null default '',
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint teams_kind_check
        check (kind in ('development', 'operations', 'security', 'platform', 'infrastructure')),
    constraint teams_name_check check (length(btrim(name)) > 0)
);
create unique index teams_name_key on teams (lower(name));

create table team_members (
    team_id    bigint not null,
    user_id    bigint not null,
    added_at   timestamptz not null default now(),
    primary key (team_id, user_id),
    constraint team_members_team_fkey foreign key (team_id) references teams (id) on delete cascade,
    constraint team_members_user_fkey foreign key (user_id) references users (id) on delete cascade
);
create index team_members_user_idx on team_members (user_id);

-- A rule maps a match to a team for one layer (or every layer when layer is null).
--   workload_label:  key = label/annotation key, value = the value it must have ('' = any value:
--                    the value itself names the team)
--   namespace_label: the same on the workload's namespace
--   image_prefix:    value = image repository prefix (e.g. registry.example.com/payments/)
--   source_default:  source_id set, every workload of that source
create table ownership_rules (
    id          bigint generated always as identity primary key,
    kind        text not null,
    key         text not null default '',
    value       text not null default '',
    source_id   bigint,
    -- application, image, runtime, orchestration, host; null = every layer
    layer       text,
    team_id     bigint not null,
    created_by  text not null,
    created_at  timestamptz not null default now(),
    constraint ownership_rules_kind_check
        check (kind in ('workload_label', 'namespace_label', 'image_prefix', 'source_default')),
    constraint ownership_rules_layer_check
        check (layer in ('application', 'image', 'runtime', 'orchestration', 'host')),
    constraint ownership_rules_team_fkey foreign key (team_id) references teams (id),
    constraint ownership_rules_source_fkey foreign key (source_id) references sources (id)
);

-- Explicit assignments: the strongest rule.
create table owner_assignments (
    workload_id  bigint not null,
    layer        text not null,
    team_id      bigint not null,
    assigned_by  text not null,
    assigned_at  timestamptz not null default now(),
    primary key (workload_id, layer),
    constraint owner_assignments_layer_check
        check (layer in ('application', 'image', 'runtime', 'orchestration', 'host')),
    constraint owner_assignments_workload_fkey foreign key (workload_id) references workloads (id),
    constraint owner_assignments_team_fkey foreign key (team_id) references teams (id)
);

-- The resolved owner of each workload per layer. A missing row means that layer is unowned.
create table workload_owners (
    workload_id  bigint not null,
    layer        text not null,
    team_id      bigint not null,
    -- assignment, workload_label, namespace_label, image_prefix, source_default
    via          text not null,
    rule_id      bigint,
    -- Human words: "namespace label team=payments".
    provenance   text not null,
    since        timestamptz not null default now(),
    primary key (workload_id, layer),
    constraint workload_owners_layer_check
        check (layer in ('application', 'image', 'runtime', 'orchestration', 'host')),
    constraint workload_owners_workload_fkey foreign key (workload_id) references workloads (id),
    constraint workload_owners_team_fkey foreign key (team_id) references teams (id)
);
create index workload_owners_team_idx on workload_owners (team_id, layer, workload_id);

-- Every owner change, never updated or deleted.
create table owner_history (
    id            bigint generated always as identity primary key,
    workload_id   bigint not null,
    layer         text not null,
    from_team_id  bigint,
    to_team_id    bigint,
    at            timestamptz not null default now(),
    cause         text not null,
    constraint owner_history_workload_fkey foreign key (workload_id) references workloads (id)
);
create index owner_history_workload_idx on owner_history (workload_id, at, id);

create trigger owner_history_append_only
    before update or delete on owner_history
    for each row execute function refuse_history_change();

-- Workloads with at least one layer unowned, for the unowned queue (maintained by the resolver).
alter table workloads add column owned_layers integer not null default 0;
create index workloads_unowned_idx on workloads (risk_score desc, id) where owned_layers < 5;

-- The label / annotation keys whose value names the owning team (the configured
-- `ownership.label_keys`, written at start so every writer resolves alike).
create table ownership_settings (
    id          boolean primary key default true,
    label_keys  text[] not null,
    updated_at  timestamptz not null default now(),
    constraint ownership_settings_single_row check (id)
);
insert into ownership_settings (label_keys)
values (array['team', 'owner', 'app.kubernetes.io/part-of']);

create index ownership_rules_team_idx on ownership_rules (team_id);
create index owner_assignments_team_idx on owner_assignments (team_id);
create index namespaces_name_idx on namespaces (name);

-- Who owned each affected workload, per layer, when the incident was opened:
-- [{"workload_id", "layer", "team_id", "team", "provenance"}].
alter table incidents add column owners_at_open jsonb not null default '[]'::jsonb;

-- A member of the owning team (or an admin) acknowledges a finding: "we have seen it".
alter table findings
    add column acknowledged_by text,
    add column acknowledged_at timestamptz,
    add constraint findings_acknowledged_check
        check ((acknowledged_by is null) = (acknowledged_at is null));

alter table ownership_rules add constraint ownership_rules_shape_check
    check ((kind in ('workload_label', 'namespace_label') and length(key) > 0)
           or (kind = 'image_prefix' and length(value) > 0)
           or (kind = 'source_default' and source_id is not null));

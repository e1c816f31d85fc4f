-- Posture findings (one row per failing check per workload and container, never deleted), the
-- waivers that take a finding out of the score, and each workload's grade.

create table waivers (
    id            bigint generated always as identity primary key,
    check_id      text not null,
    -- The scope: one workload; or a namespace (of one source, or of every source); or a source.
    workload_id   bigint,
    namespace     text,
    source_id     bigint,
    reason        text not null,
    requested_by  text not null,
    approved_by   text,
    approved_at   timestamptz,
    status        text not null default 'requested',
    expires_at    timestamptz not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint waivers_workload_fkey foreign key (workload_id) references workloads (id),
    constraint waivers_source_fkey foreign key (source_id) references sources (id),
    constraint waivers_status_check
        check (status in ('requested', 'approved', 'rejected', 'revoked', 'expired')),
    constraint waivers_scope_check
        check (num_nonnulls(workload_id, namespace, source_id) >= 1
               and (workload_id is null or (namespace is null and source_id is null))),
    constraint waivers_reason_check check (length(btrim(reason)) > 0),
    constraint waivers_approval_check
        check (status not in ('approved', 'expired') or (approved_by is not null and approved_at is not null))
);
create index waivers_active_idx on waivers (check_id, expires_at) where status = 'approved';
create index waivers_expires_idx on waivers (expires_at, id);

create table findings (
    id               bigint generated always as identity primary key,
    workload_id      bigint not null,
    -- The container the finding is about (Kubernetes: the container name in the pod template;
    -- Docker: the container's name); '' for a pod-level (workload-level) result.
    container        text not null default '',
    check_id         text not null,
    severity         text not null,
    layer            text not null,
    status           text not null default 'open',
    -- The approved waiver covering this open finding; a waived finding leaves the score.
    waiver_id        bigint,
    message          text not null,
    -- What the check read (JSON pointers, env variable names, normalized values; never a secret
    -- value).
    evidence         jsonb not null default '[]'::jsonb,
    first_seen       timestamptz not null default now(),
    last_seen        timestamptz not null default now(),
    resolved_at      timestamptz,
    resolved_reason  text,
    constraint findings_workload_fkey foreign key (workload_id) references workloads (id),
    constraint findings_waiver_fkey foreign key (waiver_id) references waivers (id),
    constraint findings_severity_check
        check (severity in ('info', 'low', 'medium', 'high', 'critical')),
    constraint findings_status_check check (status in ('open', 'resolved')),
    constraint findings_resolved_reason_check check (resolved_reason in ('fixed', 'retired', 'removed')),
    constraint findings_resolution_check
        check ((status = 'open' and resolved_at is null and resolved_reason is null)
               or (status = 'resolved' and resolved_at is not null and resolved_reason is not null))
)
-- Every resync bumps last_seen of every still-failing finding: room on each page keeps those
-- updates HOT (no new index entries).
with (fillfactor = 70);
-- At most one open finding per workload, check and container.
create unique index findings_open_key on findings (workload_id, check_id, container)
    where status = 'open';
create index findings_workload_status_idx on findings (workload_id, status, id);
create index findings_status_severity_idx on findings (status, severity, id);
create index findings_check_status_idx on findings (check_id, status, id);
create index findings_waiver_idx on findings (waiver_id) where waiver_id is not null;

create function refuse_finding_delete() returns trigger language plpgsql as $$
begin
    raise exception 'findings are never deleted' using errcode = 'insufficient_privilege';
end;
$$;

create trigger findings_never_deleted
    before delete on findings
    for each row execute function refuse_finding_delete();

-- The score of each workload from its open, non-waived findings (posture::store keeps it).
alter table workloads
    add column grade text,
    add column risk_score integer not null default 0,
    add column worst_severity text,
    add column findings_critical integer not null default 0,
    add column findings_high integer not null default 0,
    add column findings_medium integer not null default 0,
    add column findings_low integer not null default 0,
    add column findings_info integer not null default 0,
    add column pss_level text,
    add column posture_at timestamptz,
    add constraint workloads_grade_check check (grade in ('A', 'B', 'C', 'D', 'F')),
    add constraint workloads_worst_severity_check
        check (worst_severity in ('low', 'medium', 'high', 'critical')),
    add constraint workloads_pss_level_check
        check (pss_level in ('privileged', 'baseline', 'restricted'));
create index workloads_risk_idx on workloads (risk_score desc, id);

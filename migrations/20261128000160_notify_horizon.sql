-- Notifications read findings, runtime events and incident steps in commit-safe order. Ids are
-- handed out when a row is inserted, not when its transaction commits: a long collector write
-- can commit rows with lower ids after a short one committed higher ids, and a planner reading
-- "id > cursor" would step over them for ever. Each row now records the transaction that wrote
-- it; the planner reads only rows of transactions that are no longer running (below the
-- horizon: the oldest transaction of this database still in progress), in (transaction, id)
-- order, and its cursor is that pair.

alter table findings add column created_xid xid8 not null default pg_current_xact_id();
alter table runtime_events add column created_xid xid8 not null default pg_current_xact_id();
alter table incident_actions add column created_xid xid8 not null default pg_current_xact_id();

create index findings_created_xid_idx on findings (created_xid, id);
create index runtime_events_created_xid_idx on runtime_events (created_xid, id);
create index incident_actions_created_xid_idx on incident_actions (created_xid, id);

-- Existing rows carry this migration's transaction: a cursor at (this transaction, its last id)
-- goes on exactly where it was.
alter table notification_cursors add column last_xid bigint not null default 0;
update notification_cursors set last_xid = pg_current_xact_id()::text::bigint;

-- The horizon, as a 64-bit transaction id: the oldest transaction of this database still
-- running in another session (its 32-bit id widened with the current epoch), or the caller's
-- own when none is. Rows written by transactions below it are committed or never will be.
-- Sessions of other databases on the same cluster do not hold it back.
create function notification_horizon() returns bigint
language sql volatile as $$
    with me as (select pg_current_xact_id()::text::bigint as x)
    select least(
        (select x from me),
        (select min((select x from me)
                    - (((select x from me) % 4294967296) - a.backend_xid::text::bigint
                       + 4294967296) % 4294967296)
         from pg_stat_activity a
         where a.datname = current_database() and a.pid <> pg_backend_pid()
           and a.backend_xid is not null))
$$;

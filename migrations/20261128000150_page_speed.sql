-- Console pages at 100,000 workloads.

-- A workload page lists its instances, live and removed: the partial index served only the
-- live ones, so the page read every instance of the estate.
drop index instances_workload_idx;
create index instances_workload_idx on instances (workload_id);

-- The overview's unowned count (live workloads missing an owner of some layer) as an
-- index-only scan.
create index workloads_unowned_stage_idx on workloads (stage) where owned_layers < 5;

-- The tables every collector write updates: vacuum and analyze them after a few percent of
-- their rows changed instead of PostgreSQL's default 20 %, so that the first sync of a large
-- estate does not leave the console's index-only scans reading dead rows until a distant
-- autovacuum; findings are mostly inserted, and the visibility map needs inserts to count too.
alter table workloads set (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_analyze_scale_factor = 0.02,
                           autovacuum_vacuum_cost_limit = 2000);
alter table instances set (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_analyze_scale_factor = 0.02,
                           autovacuum_vacuum_cost_limit = 2000);
alter table findings set (autovacuum_vacuum_scale_factor = 0.02,
                          autovacuum_vacuum_insert_scale_factor = 0.05,
                          autovacuum_analyze_scale_factor = 0.02,
                          autovacuum_vacuum_cost_limit = 2000);

-- The posture summary by namespace (and the namespace filter of the workload list, which keeps
-- its keyset order) reads the index alone instead of every workload row.
drop index workloads_namespace_idx;
create index workloads_namespace_idx on workloads (namespace, id)
    include (stage, grade, findings_critical, findings_high, findings_medium, findings_low,
             findings_info);

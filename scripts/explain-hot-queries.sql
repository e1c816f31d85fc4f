\echo '### overview: workloads and running instances per stage'
explain (analyze, buffers, costs off, timing on) select stage, count(*), coalesce(sum(instances_running), 0)::bigint from workloads group by stage;
\echo '### workload list: first page'
explain (analyze, buffers, costs off) select w.id, w.name, w.stage, s.name from workloads w join sources s on s.id = w.source_id where true order by w.id limit 51;
\echo '### workload list: page after 50,000'
explain (analyze, buffers, costs off) select w.id, w.name, w.stage, s.name from workloads w join sources s on s.id = w.source_id where true and w.id > 50000 order by w.id limit 51;
\echo '### workload list: namespace + stage'
explain (analyze, buffers, costs off) select w.id, w.name from workloads w join sources s on s.id = w.source_id where true and w.namespace = 'ns-123' and w.stage = 'run' order by w.id limit 51;
\echo '### workload list: name search'
explain (analyze, buffers, costs off) select w.id, w.name from workloads w join sources s on s.id = w.source_id where true and w.name ilike '%app-0999%' order by w.id limit 51;
\echo '### workload list: source filter'
explain (analyze, buffers, costs off) select w.id, w.name from workloads w join sources s on s.id = w.source_id where true and w.source_id = 5 order by w.id limit 51;
\echo '### findings list: open, by check'
explain (analyze, buffers, costs off) select f.id, w.name from findings f join workloads w on w.id = f.workload_id where true and f.check_id = 'mount.runtime_socket' and f.status = 'open' order by f.id limit 51;
\echo '### findings of one workload'
explain (analyze, buffers, costs off) select f.id from findings f where f.workload_id = 50001 and f.status = 'open' order by f.id;
\echo '### posture summary by namespace'
explain (analyze, buffers, costs off) select w.namespace, sum(w.findings_critical), sum(w.findings_high), count(*) from workloads w where w.stage <> 'retire' group by 1 order by 1;
\echo '### source list with the collecting replica'
explain (analyze, buffers, costs off) select s.id, l.holder from sources s left join leases l on l.name = 'source:' || s.kind || ':' || s.name and l.expires_at > now() order by s.kind, s.name;

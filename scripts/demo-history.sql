-- A small Airflow 2.10 history for scripts/demo.sh: two DAGs, scheduled and manual runs,
-- finished, failed, retried and running task instances, JSON and pickled XComs, audit log rows,
-- a job, pools and variables (one Fernet-encrypted: the value is ciphertext, not a secret).
INSERT INTO log_template (filename, elasticsearch_id, created_at) VALUES
  ('dag_id={{ ti.dag_id }}/run_id={{ ti.run_id }}/task_id={{ ti.task_id }}/{% if ti.map_index >= 0 %}map_index={{ ti.map_index }}/{% endif %}attempt={{ try_number }}.log',
   '{dag_id}-{task_id}-{run_id}-{map_index}-{try_number}', '2024-01-01 00:00:00+00');
INSERT INTO slot_pool (pool, slots, description, include_deferred) VALUES
  ('default_pool', 128, 'Default pool', false), ('etl', 8, 'Nightly ETL', false);
INSERT INTO variable (key, val, is_encrypted, description) VALUES
  ('env', 'demo', false, 'plain variable'),
  ('api_token', 'gAAAAABmZGVtby1jaXBoZXJ0ZXh0LW5vdC1hLXJlYWwtdG9rZW4tZm9yLWRlbW8tb25seQ==', true, 'encrypted variable');
INSERT INTO job (dag_id, state, job_type, start_date, end_date, latest_heartbeat, executor_class, hostname, unixname) VALUES
  (NULL, 'running', 'SchedulerJob', '2024-03-01 00:00:00+00', NULL, '2024-03-03 12:00:00+00', 'LocalExecutor', 'scheduler-0', 'airflow');
INSERT INTO dag_run (dag_id, execution_date, start_date, end_date, state, run_id, run_type, external_trigger, conf,
                     data_interval_start, data_interval_end, queued_at, log_template_id, updated_at, clear_number) VALUES
  ('etl_daily', '2024-03-01 00:00:00+00', '2024-03-02 00:00:05+00', '2024-03-02 00:10:00+00', 'success', 'scheduled__2024-03-01T00:00:00+00:00', 'scheduled', false, '\x80057d942e',
   '2024-03-01 00:00:00+00', '2024-03-02 00:00:00+00', '2024-03-02 00:00:01+00', 1, '2024-03-02 00:10:00+00', 0),
  ('etl_daily', '2024-03-02 00:00:00+00', '2024-03-03 00:00:05+00', '2024-03-03 00:20:00+00', 'failed', 'scheduled__2024-03-02T00:00:00+00:00', 'scheduled', false, '\x80057d942e',
   '2024-03-02 00:00:00+00', '2024-03-03 00:00:00+00', '2024-03-03 00:00:01+00', 1, '2024-03-03 00:20:00+00', 0),
  ('etl_daily', '2024-03-03 00:00:00+00', '2024-03-04 00:00:05+00', NULL, 'running', 'scheduled__2024-03-03T00:00:00+00:00', 'scheduled', false, '\x80057d942e',
   '2024-03-03 00:00:00+00', '2024-03-04 00:00:00+00', '2024-03-04 00:00:01+00', 1, '2024-03-04 00:00:05+00', 0),
  ('report_ünïcode', '2024-03-02 15:30:00+00', '2024-03-02 15:30:02+00', '2024-03-02 15:31:00+00', 'success', 'manual__2024-03-02T15:30:00+00:00', 'manual', true, '\x80059521000000000000007d94288c06736f75726365948c0464656d6f948c0772657472696573944b02752e',
   '2024-03-02 15:30:00+00', '2024-03-02 15:30:00+00', '2024-03-02 15:30:01+00', 1, '2024-03-02 15:31:00+00', 0);
INSERT INTO task_instance (task_id, dag_id, run_id, map_index, start_date, end_date, duration, state, try_number, max_tries,
                           hostname, unixname, job_id, pool, pool_slots, queue, priority_weight, operator, queued_dttm, executor_config, updated_at) VALUES
  ('extract', 'etl_daily', 'scheduled__2024-03-01T00:00:00+00:00', -1, '2024-03-02 00:00:10+00', '2024-03-02 00:05:00+00', 290, 'success', 1, 2, 'worker-1', 'airflow', 1, 'etl', 1, 'default', 3, 'PythonOperator', '2024-03-02 00:00:06+00', '\x80057d942e', '2024-03-02 00:05:00+00'),
  ('load', 'etl_daily', 'scheduled__2024-03-01T00:00:00+00:00', 0, '2024-03-02 00:05:10+00', '2024-03-02 00:09:00+00', 230, 'success', 1, 2, 'worker-1', 'airflow', 1, 'etl', 1, 'default', 2, 'PythonOperator', '2024-03-02 00:05:06+00', '\x80057d942e', '2024-03-02 00:09:00+00'),
  ('load', 'etl_daily', 'scheduled__2024-03-01T00:00:00+00:00', 1, '2024-03-02 00:05:10+00', '2024-03-02 00:09:30+00', 260, 'success', 1, 2, 'worker-2', 'airflow', 1, 'etl', 1, 'default', 2, 'PythonOperator', '2024-03-02 00:05:06+00', '\x80057d942e', '2024-03-02 00:09:30+00'),
  ('extract', 'etl_daily', 'scheduled__2024-03-02T00:00:00+00:00', -1, '2024-03-03 00:10:10+00', '2024-03-03 00:19:00+00', 530, 'failed', 3, 2, 'worker-2', 'airflow', 1, 'etl', 1, 'default', 3, 'PythonOperator', '2024-03-03 00:10:06+00', '\x80057d942e', '2024-03-03 00:19:00+00'),
  ('load', 'etl_daily', 'scheduled__2024-03-02T00:00:00+00:00', -1, NULL, NULL, NULL, 'upstream_failed', 0, 2, '', 'airflow', NULL, 'etl', 1, 'default', 2, 'PythonOperator', NULL, '\x80057d942e', '2024-03-03 00:19:01+00'),
  ('extract', 'etl_daily', 'scheduled__2024-03-03T00:00:00+00:00', -1, '2024-03-04 00:00:10+00', NULL, NULL, 'running', 1, 2, 'worker-1', 'airflow', 1, 'etl', 1, 'default', 3, 'PythonOperator', '2024-03-04 00:00:06+00', '\x80057d942e', '2024-03-04 00:00:10+00'),
  ('render', 'report_ünïcode', 'manual__2024-03-02T15:30:00+00:00', -1, '2024-03-02 15:30:05+00', '2024-03-02 15:30:55+00', 50, 'success', 1, 0, 'worker-1', 'airflow', 1, 'default_pool', 1, 'default', 1, 'BashOperator', '2024-03-02 15:30:03+00', '\x80057d942e', '2024-03-02 15:30:55+00');
INSERT INTO task_instance_history (task_id, dag_id, run_id, map_index, try_number, start_date, end_date, duration, state, max_tries,
                                   hostname, unixname, job_id, pool, pool_slots, queue, priority_weight, operator, updated_at) VALUES
  ('extract', 'etl_daily', 'scheduled__2024-03-02T00:00:00+00:00', -1, 1, '2024-03-03 00:00:10+00', '2024-03-03 00:04:00+00', 230, 'up_for_retry', 2, 'worker-1', 'airflow', 1, 'etl', 1, 'default', 3, 'PythonOperator', '2024-03-03 00:04:00+00'),
  ('extract', 'etl_daily', 'scheduled__2024-03-02T00:00:00+00:00', -1, 2, '2024-03-03 00:05:10+00', '2024-03-03 00:09:00+00', 230, 'up_for_retry', 2, 'worker-1', 'airflow', 1, 'etl', 1, 'default', 3, 'PythonOperator', '2024-03-03 00:09:00+00');
INSERT INTO xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp) VALUES
  (1, 'extract', -1, 'return_value', 'etl_daily', 'scheduled__2024-03-01T00:00:00+00:00', convert_to('{"rows": 1250, "path": "s3://lake/raw/2024-03-01"}', 'UTF8'), '2024-03-02 00:05:00+00'),
  (1, 'load', 0, 'return_value', 'etl_daily', 'scheduled__2024-03-01T00:00:00+00:00', '\x8004950d000000000000007d948c04726f7773944b03732e', '2024-03-02 00:09:00+00');
INSERT INTO log (dttm, dag_id, task_id, map_index, event, execution_date, run_id, owner, owner_display_name, extra, try_number) VALUES
  ('2024-03-02 15:30:00+00', 'report_ünïcode', NULL, NULL, 'trigger', '2024-03-02 15:30:00+00', 'manual__2024-03-02T15:30:00+00:00', 'admin', 'Admin', '{"conf": {"source": "demo"}}', NULL),
  ('2024-03-03 00:19:00+00', 'etl_daily', 'extract', -1, 'failed', '2024-03-02 00:00:00+00', 'scheduled__2024-03-02T00:00:00+00:00', 'airflow', NULL, NULL, 3);

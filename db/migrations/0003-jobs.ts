import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/** Jobs (one per workflow), their append-only event streams, idempotency keys, and project deletion marks. */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    CREATE TABLE jobs (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      -- No foreign key: a project's deletion job outlives the project.
      project_id uuid,
      kind text NOT NULL,
      workflow_id text NOT NULL UNIQUE,
      title text NOT NULL,
      status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
      stage text,
      counters jsonb NOT NULL DEFAULT '{}',
      error jsonb,
      params jsonb NOT NULL DEFAULT '{}',
      requested_by text NOT NULL,
      retry_of uuid REFERENCES jobs(id) ON DELETE SET NULL,
      last_event_seq integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      started_at timestamptz,
      finished_at timestamptz
    );
    CREATE INDEX jobs_tenant_idx ON jobs (tenant_id, created_at DESC, id DESC);
    CREATE INDEX jobs_project_idx ON jobs (project_id, created_at);
    CREATE INDEX jobs_open_idx ON jobs (updated_at) WHERE status IN ('queued', 'running');

    CREATE TABLE job_events (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      seq integer NOT NULL,
      type text NOT NULL,
      data jsonb NOT NULL DEFAULT '{}',
      -- Set by writers that may run twice (activity retries): the same key is written once.
      dedupe_key text,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (job_id, seq),
      UNIQUE (job_id, dedupe_key)
    );

    CREATE TABLE idempotency_keys (
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      route text NOT NULL,
      key text NOT NULL,
      request_hash text NOT NULL,
      job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, route, key)
    );
    CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

    ALTER TABLE projects ADD COLUMN deletion_job_id uuid REFERENCES jobs(id) ON DELETE SET NULL;
  `);
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    ALTER TABLE projects DROP COLUMN IF EXISTS deletion_job_id;
    DROP TABLE IF EXISTS idempotency_keys, job_events, jobs;
  `);
};

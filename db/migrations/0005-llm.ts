import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/** The LLM gateway: per-tenant settings, the response cache, usage and spend, and shared rate-limit buckets. */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    -- What a tenant overrides of the environment's defaults; API keys as vault references only.
    CREATE TABLE llm_settings (
      tenant_id uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
      settings jsonb NOT NULL DEFAULT '{}',
      updated_by text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    -- The key is a digest over tenant, provider, endpoint, model, parameters and messages, so no
    -- entry is ever shared between tenants; tenant_id is kept for deletion and inspection.
    CREATE TABLE llm_cache (
      key text PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      operation text NOT NULL,
      provider text NOT NULL,
      model text NOT NULL,
      response jsonb,
      -- Embeddings as float4 bytes: a fifth of their JSON size.
      vector bytea,
      hits integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    );
    CREATE INDEX llm_cache_expiry_idx ON llm_cache (expires_at);

    -- One row per provider call or cache hit. Usage outlives the project and job it served
    -- (the tenant's spend must not shrink when a project is deleted).
    CREATE TABLE llm_usage (
      id bigserial PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      project_id uuid REFERENCES projects(id) ON DELETE SET NULL,
      job_id uuid REFERENCES jobs(id) ON DELETE SET NULL,
      operation text NOT NULL CHECK (operation IN ('chat', 'stream', 'structured', 'embedding')),
      provider text NOT NULL,
      model text NOT NULL,
      prompt_tokens integer NOT NULL DEFAULT 0,
      completion_tokens integer NOT NULL DEFAULT 0,
      items integer NOT NULL DEFAULT 1,
      cost_usd numeric(14, 6) NOT NULL DEFAULT 0,
      latency_ms integer NOT NULL DEFAULT 0,
      cached boolean NOT NULL DEFAULT false,
      fallback_from text,
      outcome text NOT NULL CHECK (outcome IN ('ok', 'failed')),
      error text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX llm_usage_tenant_time_idx ON llm_usage (tenant_id, created_at);
    CREATE INDEX llm_usage_job_idx ON llm_usage (job_id) WHERE job_id IS NOT NULL;

    -- The month's spend per tenant, kept beside the usage rows so a budget check reads one row.
    CREATE TABLE llm_monthly_spend (
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      month date NOT NULL,
      cost_usd numeric(14, 6) NOT NULL DEFAULT 0,
      PRIMARY KEY (tenant_id, month)
    );

    -- Token buckets shared by every worker and API instance, one per provider endpoint and API key.
    CREATE TABLE llm_rate_buckets (
      key text PRIMARY KEY,
      tokens double precision NOT NULL,
      refilled_at timestamptz NOT NULL
    );
  `);
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query('DROP TABLE IF EXISTS llm_rate_buckets, llm_monthly_spend, llm_usage, llm_cache, llm_settings;');
};

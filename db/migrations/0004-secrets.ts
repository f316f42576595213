import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/** The secrets vault: named secrets per tenant, their encrypted versions, and who resolved which version when. */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    CREATE TABLE secrets (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      description text NOT NULL DEFAULT '',
      current_version integer NOT NULL CHECK (current_version >= 1),
      created_by text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (tenant_id, name)
    );
    CREATE INDEX secrets_tenant_idx ON secrets (tenant_id, created_at, id);

    -- Envelope encryption: the value under its own data key, the data key wrapped by a master key.
    CREATE TABLE secret_versions (
      secret_id uuid NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
      version integer NOT NULL CHECK (version >= 1),
      ciphertext bytea NOT NULL,
      iv bytea NOT NULL,
      auth_tag bytea NOT NULL,
      wrapped_data_key bytea NOT NULL,
      data_key_iv bytea NOT NULL,
      data_key_auth_tag bytea NOT NULL,
      master_key_id text NOT NULL,
      enabled boolean NOT NULL DEFAULT true,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (secret_id, version)
    );
    -- Master-key rotation looks for versions not yet wrapped under the new key.
    CREATE INDEX secret_versions_master_key_idx ON secret_versions (master_key_id);

    -- Rows go with their secret: the audit log keeps the deletion itself.
    CREATE TABLE secret_access_logs (
      id uuid PRIMARY KEY,
      secret_id uuid NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
      version integer NOT NULL,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      -- No foreign key: the log outlives the jobs it mentions.
      job_id uuid,
      activity text,
      actor text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX secret_access_logs_secret_idx ON secret_access_logs (secret_id, created_at DESC, id DESC);
  `);
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query('DROP TABLE IF EXISTS secret_access_logs, secret_versions, secrets;');
};

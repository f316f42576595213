import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/** Tenancy, identity, projects and the append-only audit log. */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    CREATE TABLE tenants (
      id uuid PRIMARY KEY,
      name text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE users (
      id uuid PRIMARY KEY,
      email text NOT NULL,
      name text NOT NULL,
      password_hash text NOT NULL,
      token_epoch integer NOT NULL DEFAULT 0,
      failed_login_count integer NOT NULL DEFAULT 0,
      locked_until timestamptz,
      email_verified_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX users_email_key ON users (lower(email));

    CREATE TABLE memberships (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      role text NOT NULL CHECK (role IN ('admin', 'approver', 'member', 'viewer')),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (tenant_id, user_id)
    );
    CREATE INDEX memberships_user_idx ON memberships (user_id);

    CREATE TABLE api_tokens (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      prefix text NOT NULL UNIQUE,
      token_hash text NOT NULL UNIQUE,
      role text NOT NULL CHECK (role IN ('admin', 'approver', 'member', 'viewer')),
      created_by uuid REFERENCES users(id) ON DELETE SET NULL,
      expires_at timestamptz,
      last_used_at timestamptz,
      revoked_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX api_tokens_tenant_idx ON api_tokens (tenant_id, created_at, id);

    CREATE TABLE refresh_tokens (
      id uuid PRIMARY KEY,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      family_id uuid NOT NULL,
      token_hash text NOT NULL UNIQUE,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      revoked_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
    CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id, tenant_id);

    CREATE TABLE invitations (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      email text NOT NULL,
      role text NOT NULL CHECK (role IN ('admin', 'approver', 'member', 'viewer')),
      token_hash text NOT NULL UNIQUE,
      invited_by uuid REFERENCES users(id) ON DELETE SET NULL,
      expires_at timestamptz NOT NULL,
      accepted_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX invitations_tenant_idx ON invitations (tenant_id, created_at, id);

    CREATE TABLE password_resets (
      id uuid PRIMARY KEY,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      token_hash text NOT NULL UNIQUE,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE login_throttles (
      key text PRIMARY KEY,
      failures integer NOT NULL DEFAULT 0,
      window_started_at timestamptz NOT NULL DEFAULT now(),
      locked_until timestamptz
    );

    CREATE TABLE projects (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      description text NOT NULL DEFAULT '',
      settings jsonb NOT NULL DEFAULT '{}',
      created_by uuid REFERENCES users(id) ON DELETE SET NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX projects_tenant_name_key ON projects (tenant_id, lower(name));
    CREATE INDEX projects_tenant_idx ON projects (tenant_id, created_at, id);

    CREATE TABLE audit_logs (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      tenant_id uuid,
      actor_type text NOT NULL CHECK (actor_type IN ('user', 'api_token', 'anonymous', 'system')),
      actor_id text,
      action text NOT NULL,
      resource_type text,
      resource_id text,
      outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
      request_id text,
      ip text,
      user_agent text,
      details jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX audit_logs_tenant_idx ON audit_logs (tenant_id, id);
    CREATE INDEX audit_logs_created_idx ON audit_logs (created_at);

    -- Rows past retention move here; nothing is ever deleted outright.
    CREATE TABLE audit_logs_archive (LIKE audit_logs INCLUDING DEFAULTS, archived_at timestamptz NOT NULL DEFAULT now());
    ALTER TABLE audit_logs_archive ADD PRIMARY KEY (id);

    -- The audit log is append-only: the database itself refuses changes. The only DELETE it
    -- allows is the archiving function below, which copies each row before removing it.
    CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND current_setting('auditflow.archiving', true) = 'on' THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$;
    CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
      FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
    CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
      FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only();

    CREATE FUNCTION archive_audit_logs(cutoff timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE moved bigint;
    BEGIN
      PERFORM set_config('auditflow.archiving', 'on', true);
      WITH gone AS (DELETE FROM audit_logs WHERE created_at < cutoff RETURNING *)
      INSERT INTO audit_logs_archive SELECT * FROM gone;
      GET DIAGNOSTICS moved = ROW_COUNT;
      PERFORM set_config('auditflow.archiving', 'off', true);
      RETURN moved;
    END $$;
  `);
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    DROP FUNCTION IF EXISTS archive_audit_logs(timestamptz);
    DROP TABLE IF EXISTS audit_logs_archive, audit_logs, projects, login_throttles, password_resets,
      invitations, refresh_tokens, api_tokens, memberships, users, tenants;
    DROP FUNCTION IF EXISTS audit_logs_append_only();
  `);
};

import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/** Repository scans: each scan and its files, and the issues tracked across scans. */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    CREATE TABLE scans (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      job_id uuid REFERENCES jobs(id) ON DELETE SET NULL,
      -- What was scanned: a git URL, a GitHub/GitLab repository or an upload's blob key (never a token).
      source jsonb NOT NULL,
      mode text NOT NULL CHECK (mode IN ('full', 'incremental')),
      status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
      -- The scan an incremental scan compares against.
      base_scan_id uuid REFERENCES scans(id) ON DELETE SET NULL,
      commit_sha text,
      archive_sha256 text,
      -- What shaped the findings besides the files (the rule set, the project's rule settings):
      -- an incremental scan carries files forward only from a base scan with the same digest.
      analysis_digest text,
      files_total integer NOT NULL DEFAULT 0,
      files_analyzed integer NOT NULL DEFAULT 0,
      files_carried integer NOT NULL DEFAULT 0,
      files_skipped integer NOT NULL DEFAULT 0,
      findings jsonb NOT NULL DEFAULT '{}',
      new_issues integer NOT NULL DEFAULT 0,
      fixed_issues integer NOT NULL DEFAULT 0,
      warnings jsonb NOT NULL DEFAULT '[]',
      llm jsonb NOT NULL DEFAULT '{}',
      error text,
      started_at timestamptz,
      finished_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX scans_project_idx ON scans (project_id, created_at DESC, id DESC);

    -- The files a scan selected, in analysis order (seq), with their content hash: incremental
    -- scans analyze only files whose hash changed.
    CREATE TABLE scan_files (
      scan_id uuid NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
      seq integer NOT NULL,
      path text NOT NULL,
      language text NOT NULL,
      bytes integer NOT NULL,
      content_hash text NOT NULL,
      -- analyzed: by this scan; carried: unchanged since the base scan, its issues carried forward.
      state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'analyzed', 'carried', 'failed')),
      -- The analysis batch of a file to analyze (null when carried): workflows pass batch numbers, never paths.
      batch integer,
      findings integer NOT NULL DEFAULT 0,
      -- Why the file could not be analyzed (state failed): a scan warning, not a scan failure.
      warning text,
      PRIMARY KEY (scan_id, seq),
      UNIQUE (scan_id, path)
    );
    CREATE INDEX scan_files_batch_idx ON scan_files (scan_id, batch);

    CREATE TABLE issues (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      fingerprint text NOT NULL,
      occurrence integer NOT NULL,
      rule_id text NOT NULL,
      source text NOT NULL CHECK (source IN ('rule', 'llm')),
      title text NOT NULL,
      message text NOT NULL,
      severity text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
      cwe text,
      path text NOT NULL,
      start_line integer NOT NULL,
      end_line integer NOT NULL,
      start_column integer NOT NULL,
      matched_text text NOT NULL,
      -- A few lines around the finding as last seen (secrets masked), so the issue reads without the tree.
      code_context jsonb NOT NULL DEFAULT '{}',
      suppressed boolean NOT NULL DEFAULT false,
      status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed', 'false_positive', 'wont_fix', 'fixed')),
      status_comment text,
      status_changed_by text,
      status_changed_at timestamptz,
      first_seen_scan_id uuid REFERENCES scans(id) ON DELETE SET NULL,
      last_seen_scan_id uuid REFERENCES scans(id) ON DELETE SET NULL,
      fixed_in_scan_id uuid REFERENCES scans(id) ON DELETE SET NULL,
      first_seen_at timestamptz NOT NULL DEFAULT now(),
      last_seen_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    -- One row per finding however often a batch is retried or a worker crashes mid-scan.
    CREATE UNIQUE INDEX issues_identity_idx ON issues (project_id, fingerprint, occurrence);
    CREATE INDEX issues_project_list_idx ON issues (project_id, created_at, id);
    CREATE INDEX issues_last_seen_idx ON issues (project_id, last_seen_scan_id);
    -- The list's sort orders (keyset pagination on the sort key and id).
    CREATE INDEX issues_path_idx ON issues (project_id, path, id);
    CREATE INDEX issues_first_seen_idx ON issues (project_id, first_seen_at, id);
    CREATE INDEX issues_last_seen_at_idx ON issues (project_id, last_seen_at, id);
    CREATE INDEX issues_severity_idx ON issues (project_id, (CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 WHEN 'info' THEN 0 END), id);
  `);
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query('DROP TABLE IF EXISTS issues, scan_files, scans;');
};

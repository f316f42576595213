import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/**
 * Documents of the knowledge base, their chunks (text for keyword search; vectors live in the
 * vector store under the chunk's id), and the items an ingestion job works through.
 */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query(`
    CREATE TABLE documents (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      -- The document's identity within its project: a path within the upload, a URL, or a title.
      source_key text NOT NULL,
      source_type text NOT NULL CHECK (source_type IN ('file', 'url', 'text')),
      -- The source a sync compares against: the URL list, one archive, loose files, or text.
      origin text NOT NULL,
      title text NOT NULL,
      format text NOT NULL,
      bytes bigint NOT NULL DEFAULT 0,
      -- Of the stored version's raw bytes: ingesting the same bytes again is a no-op.
      content_sha256 text,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'stored', 'failed')),
      error text,
      chunk_count integer NOT NULL DEFAULT 0,
      token_count integer NOT NULL DEFAULT 0,
      -- The vector collection holding its chunks' vectors (one per embedding model and dimension).
      embedding_model text,
      embedding_dimensions integer,
      last_job_id uuid REFERENCES jobs(id) ON DELETE SET NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, source_key)
    );
    CREATE INDEX documents_project_list_idx ON documents (project_id, created_at, id);
    CREATE INDEX documents_tenant_idx ON documents (tenant_id, embedding_model);

    -- A chunk's id is its vector's id: UUID v5 of (document id, content hash, chunk index).
    -- A document's live chunks are those of its current content_sha256.
    CREATE TABLE document_chunks (
      id uuid PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
      content_sha256 text NOT NULL,
      chunk_index integer NOT NULL,
      text text NOT NULL,
      heading_path jsonb NOT NULL DEFAULT '[]',
      start_offset integer NOT NULL,
      end_offset integer NOT NULL,
      tokens integer NOT NULL,
      -- Headings weigh more than body text in keyword search.
      search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', heading_path::text), 'A') ||
        setweight(to_tsvector('english', text), 'B')
      ) STORED,
      UNIQUE (document_id, content_sha256, chunk_index)
    );
    CREATE INDEX document_chunks_search_idx ON document_chunks USING gin (search_vector);
    CREATE INDEX document_chunks_tenant_idx ON document_chunks (tenant_id, project_id);
  `);
  await qi.sequelize.query(`
    -- What an ingestion job works through, one row per document (and per uploaded archive, which
    -- planning expands into its entries). Workflows carry only the job id and batch numbers.
    CREATE TABLE ingestion_items (
      job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      seq integer NOT NULL,
      -- Assigned by planning; null for archives and for documents a sync removed.
      batch integer,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      source_key text NOT NULL,
      source_type text NOT NULL CHECK (source_type IN ('file', 'url', 'text', 'archive')),
      origin text NOT NULL,
      -- How people and format detection know it: the file name or entry path, the URL, the title.
      name text NOT NULL,
      title text,
      media_type text,
      url text,
      blob_key text,
      -- Where the document starts in that blob: archive entries are packed several to a blob; null for a blob of its own.
      blob_offset bigint,
      -- The seq of the archive an entry came from; null for what the request itself named.
      expanded_from integer,
      bytes bigint,
      content_sha256 text,
      format text,
      state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'fetched', 'parsed', 'chunked', 'embedded', 'stored', 'unchanged', 'failed', 'removed', 'expanded')),
      error text,
      document_id uuid REFERENCES documents(id) ON DELETE SET NULL,
      -- The version this one replaces, removed once this one is stored (its chunks and vectors).
      replaced_sha256 text,
      replaced_model text,
      replaced_dimensions integer,
      -- Staged between parsing and chunking, cleared once chunked.
      parsed_text text,
      chunk_count integer NOT NULL DEFAULT 0,
      token_count integer NOT NULL DEFAULT 0,
      embedding_model text,
      embedding_dimensions integer,
      PRIMARY KEY (job_id, seq)
    );
    CREATE INDEX ingestion_items_batch_idx ON ingestion_items (job_id, batch);

    -- Vectors between the embedding and the storing stage (float4 bytes), keyed by chunk id.
    CREATE TABLE ingestion_vectors (
      chunk_id uuid PRIMARY KEY REFERENCES document_chunks(id) ON DELETE CASCADE,
      job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      vector bytea NOT NULL
    );
    CREATE INDEX ingestion_vectors_job_idx ON ingestion_vectors (job_id);
  `);
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query('DROP TABLE IF EXISTS ingestion_vectors, ingestion_items, document_chunks, documents;');
};

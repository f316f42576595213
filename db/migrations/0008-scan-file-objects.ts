import type { MigrationFn } from 'umzug';
import type { QueryInterface } from 'sequelize';

/**
 * A repository's files are read from its object store, not a checkout: each selected file keeps
 * its git blob id, so an analysis batch reads it without listing the tree again (null for an
 * upload's files, read from disk by path).
 */
export const up: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query('ALTER TABLE scan_files ADD COLUMN object_id text');
};

export const down: MigrationFn<QueryInterface> = async ({ context: qi }) => {
  await qi.sequelize.query('ALTER TABLE scan_files DROP COLUMN IF EXISTS object_id');
};

import { Context } from '@temporalio/activity';
import { checkSecretReference, projectSecretReferences } from '../services/credential-checks';
import type { VaultDeps } from '../services/vault';
import type { SecretReferenceVerdict } from '../workflows/definitions';

export function createCredentialCheckActivities(deps: VaultDeps) {
  return {
    async listProjectSecretReferences(projectId: string): Promise<string[]> {
      return projectSecretReferences(projectId);
    },
    /** Resolves the reference here, inside the activity; only the verdict goes back into workflow history. */
    async checkSecretReference(jobId: string, tenantId: string, reference: string): Promise<SecretReferenceVerdict> {
      return checkSecretReference(deps, { tenantId, jobId, activity: Context.current().info.activityType }, reference);
    },
  };
}

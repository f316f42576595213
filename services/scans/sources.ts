import { Project, type ScanSource } from '../../db';
import { NotFoundError } from '../../lib/errors';

/**
 * Where a scan's repository lives and which vault reference holds its token. Tokens are never
 * part of a scan's source or a URL: a project names them in its settings, under
 * `credentials.git`, `credentials.github` or `credentials.gitlab`, as `secret://<name>`.
 */

/** `owner/name`, or GitLab's `group/subgroup/name`; no `.` or `..` segments. */
export const repositoryPattern = /^(?!\.{1,2}(?:\/|$))[A-Za-z0-9_.-]{1,100}(?:\/(?!\.{1,2}(?:\/|$))[A-Za-z0-9_.-]{1,100}){1,5}$/;

const defaultBaseUrls = { github: 'https://github.com', gitlab: 'https://gitlab.com' } as const;

export interface RemoteRepository {
  url: string;
  tokenReference: string | null;
  /** GitHub and GitLab take a token as the password of HTTP basic auth (user `x-access-token`). */
  tokenScheme: 'bearer' | 'basic-x-access-token';
}

/** The clone URL of a hosted repository (`owner/name`, or GitLab's `group/subgroup/name`). */
export function hostedRepositoryUrl(source: Extract<ScanSource, { type: 'github' | 'gitlab' }>): string {
  const base = (source.baseUrl ?? defaultBaseUrls[source.type]).replace(/\/+$/, '');
  return `${base}/${source.repo}.git`;
}

function credentialReference(settings: Record<string, unknown>, kind: 'git' | 'github' | 'gitlab'): string | null {
  const credentials = settings.credentials;
  if (credentials === null || typeof credentials !== 'object') return null;
  const ref = (credentials as Record<string, unknown>)[kind];
  return typeof ref === 'string' ? ref : null;
}

export async function remoteOf(projectId: string, source: Exclude<ScanSource, { type: 'zip' }>): Promise<RemoteRepository> {
  const project = await Project.findByPk(projectId, { attributes: ['settings'] });
  if (!project) throw new NotFoundError('Project');
  if (source.type === 'git') return { url: source.url, tokenReference: credentialReference(project.settings, 'git'), tokenScheme: 'bearer' };
  return { url: hostedRepositoryUrl(source), tokenReference: credentialReference(project.settings, source.type), tokenScheme: 'basic-x-access-token' };
}

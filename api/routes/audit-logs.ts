import type { AppDeps } from '../app';
import { ApiRouter } from '../route';

export function auditLogsRouter(_deps: AppDeps): ApiRouter {
  return new ApiRouter();
}

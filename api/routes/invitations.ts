import type { AppDeps } from '../app';
import { ApiRouter } from '../route';

export function invitationsRouter(_deps: AppDeps): ApiRouter {
  return new ApiRouter();
}

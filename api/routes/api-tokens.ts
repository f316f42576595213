import type { AppDeps } from '../app';
import { ApiRouter } from '../route';

export function apiTokensRouter(_deps: AppDeps): ApiRouter {
  return new ApiRouter();
}

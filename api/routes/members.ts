import type { AppDeps } from '../app';
import { ApiRouter } from '../route';

export function membersRouter(_deps: AppDeps): ApiRouter {
  return new ApiRouter();
}

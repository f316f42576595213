import type { AppDeps } from '../app';
import { ApiRouter } from '../route';

export function authRouter(_deps: AppDeps): ApiRouter {
  return new ApiRouter();
}

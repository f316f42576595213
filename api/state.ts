import type { ParameterizedContext } from 'koa';
import type { Logger } from '../lib/logger';
import type { AuditScope } from '../services/audit';
import type { Permission } from '../services/permissions';
import type { Principal } from '../services/principal';

export interface AppState {
  requestId: string;
  log: Logger;
  audit: AuditScope;
  auth?: Principal;
  /** Set when authorization refused a permission (or a non-person on a session route), so the denial is audited. */
  denied?: Permission | 'session';
  /** Set when the route reached changes nothing whatever its method, so it is audited like a GET. */
  readOnly?: boolean;
}

export type AppContext = ParameterizedContext<AppState>;

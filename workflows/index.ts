export { auditRetention } from './audit-retention';

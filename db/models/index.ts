import {
  DataTypes,
  Model,
  type CreationOptional,
  type ForeignKey,
  type InferAttributes,
  type InferCreationAttributes,
  type NonAttribute,
  type Sequelize,
} from 'sequelize';

export const roles = ['admin', 'approver', 'member', 'viewer'] as const;
export type Role = (typeof roles)[number];

const id = { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 };
const role = { type: DataTypes.STRING, allowNull: false, validate: { isIn: [roles as unknown as string[]] } };

export class Tenant extends Model<InferAttributes<Tenant>, InferCreationAttributes<Tenant>> {
  declare id: CreationOptional<string>;
  declare name: string;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export class User extends Model<InferAttributes<User>, InferCreationAttributes<User>> {
  declare id: CreationOptional<string>;
  declare email: string;
  declare name: string;
  declare passwordHash: string;
  declare tokenEpoch: CreationOptional<number>;
  declare failedLoginCount: CreationOptional<number>;
  declare lockedUntil: CreationOptional<Date | null>;
  declare emailVerifiedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export class Membership extends Model<InferAttributes<Membership>, InferCreationAttributes<Membership>> {
  declare id: CreationOptional<string>;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare userId: ForeignKey<User['id']>;
  declare role: Role;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare user?: NonAttribute<User>;
  declare tenant?: NonAttribute<Tenant>;
}

export class ApiToken extends Model<InferAttributes<ApiToken>, InferCreationAttributes<ApiToken>> {
  declare id: CreationOptional<string>;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare name: string;
  declare prefix: string;
  declare tokenHash: string;
  declare role: Role;
  declare createdBy: string | null;
  declare expiresAt: Date | null;
  declare lastUsedAt: CreationOptional<Date | null>;
  declare revokedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export class RefreshToken extends Model<InferAttributes<RefreshToken>, InferCreationAttributes<RefreshToken>> {
  declare id: CreationOptional<string>;
  declare userId: ForeignKey<User['id']>;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare familyId: string;
  declare tokenHash: string;
  declare expiresAt: Date;
  declare usedAt: CreationOptional<Date | null>;
  declare revokedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
}

export class Invitation extends Model<InferAttributes<Invitation>, InferCreationAttributes<Invitation>> {
  declare id: CreationOptional<string>;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare email: string;
  declare role: Role;
  declare tokenHash: string;
  declare invitedBy: string | null;
  declare expiresAt: Date;
  declare acceptedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export class PasswordReset extends Model<InferAttributes<PasswordReset>, InferCreationAttributes<PasswordReset>> {
  declare id: CreationOptional<string>;
  declare userId: ForeignKey<User['id']>;
  declare tokenHash: string;
  declare expiresAt: Date;
  declare usedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
}

export class EmailVerification extends Model<InferAttributes<EmailVerification>, InferCreationAttributes<EmailVerification>> {
  declare id: CreationOptional<string>;
  declare userId: ForeignKey<User['id']>;
  declare tokenHash: string;
  declare expiresAt: Date;
  declare usedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
}

export class Project extends Model<InferAttributes<Project>, InferCreationAttributes<Project>> {
  declare id: CreationOptional<string>;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare name: string;
  declare description: CreationOptional<string>;
  declare settings: CreationOptional<Record<string, unknown>>;
  declare createdBy: string | null;
  /** Set from the moment a deletion job starts: the project is hidden from then on. */
  declare deletionJobId: CreationOptional<string | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export const jobStatuses = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof jobStatuses)[number];
export const terminalJobStatuses: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export interface JobError {
  message: string;
  type?: string;
}

export class Job extends Model<InferAttributes<Job>, InferCreationAttributes<Job>> {
  declare id: CreationOptional<string>;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare projectId: string | null;
  declare kind: string;
  declare workflowId: string;
  declare title: string;
  declare status: CreationOptional<JobStatus>;
  declare stage: CreationOptional<string | null>;
  declare counters: CreationOptional<Record<string, number>>;
  declare error: CreationOptional<JobError | null>;
  declare params: CreationOptional<Record<string, unknown>>;
  declare requestedBy: string;
  declare retryOf: CreationOptional<string | null>;
  declare lastEventSeq: CreationOptional<number>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare startedAt: CreationOptional<Date | null>;
  declare finishedAt: CreationOptional<Date | null>;
}

export class JobEvent extends Model<InferAttributes<JobEvent>, InferCreationAttributes<JobEvent>> {
  declare id: CreationOptional<string>; // bigint, returned as a string by pg
  declare jobId: ForeignKey<Job['id']>;
  declare seq: number;
  declare type: string;
  declare data: CreationOptional<Record<string, unknown>>;
  declare dedupeKey: string | null;
  declare createdAt: CreationOptional<Date>;
}

export class IdempotencyKey extends Model<InferAttributes<IdempotencyKey>, InferCreationAttributes<IdempotencyKey>> {
  declare tenantId: string;
  declare route: string;
  declare key: string;
  declare requestHash: string;
  declare jobId: string;
  declare createdAt: CreationOptional<Date>;
}

export class Secret extends Model<InferAttributes<Secret>, InferCreationAttributes<Secret>> {
  declare id: string;
  declare tenantId: ForeignKey<Tenant['id']>;
  declare name: string;
  declare description: CreationOptional<string>;
  declare currentVersion: number;
  declare createdBy: string | null;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare versions?: NonAttribute<SecretVersion[]>;
}

/** One encrypted value of a secret (see lib/envelope.ts): only the current version is enabled. */
export class SecretVersion extends Model<InferAttributes<SecretVersion>, InferCreationAttributes<SecretVersion>> {
  declare secretId: string;
  declare version: number;
  declare ciphertext: Buffer;
  declare iv: Buffer;
  declare authTag: Buffer;
  declare wrappedDataKey: Buffer;
  declare dataKeyIv: Buffer;
  declare dataKeyAuthTag: Buffer;
  declare masterKeyId: string;
  declare enabled: CreationOptional<boolean>;
  declare createdAt: CreationOptional<Date>;
  declare secret?: NonAttribute<Secret>;
}

export class SecretAccessLog extends Model<InferAttributes<SecretAccessLog>, InferCreationAttributes<SecretAccessLog>> {
  declare id: CreationOptional<string>;
  declare secretId: string;
  declare version: number;
  declare tenantId: string;
  declare jobId: string | null;
  declare activity: string | null;
  declare actor: string | null;
  declare createdAt: CreationOptional<Date>;
}

/** A tenant's overrides of the environment's LLM defaults (validated by services/llm/settings). */
export class LlmSettings extends Model<InferAttributes<LlmSettings>, InferCreationAttributes<LlmSettings>> {
  declare tenantId: string;
  declare settings: Record<string, unknown>;
  declare updatedBy: string | null;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export const llmOperations = ['chat', 'stream', 'structured', 'embedding'] as const;
export type LlmOperation = (typeof llmOperations)[number];

/** One provider call, or one cache hit, of the LLM gateway. */
export class LlmUsage extends Model<InferAttributes<LlmUsage>, InferCreationAttributes<LlmUsage>> {
  declare id: CreationOptional<string>; // bigint, returned as a string by pg
  declare tenantId: string;
  declare projectId: string | null;
  declare jobId: string | null;
  declare operation: LlmOperation;
  declare provider: string;
  declare model: string;
  declare promptTokens: number;
  declare completionTokens: number;
  declare items: number;
  declare costUsd: number;
  declare latencyMs: number;
  declare cached: boolean;
  declare fallbackFrom: string | null;
  declare outcome: 'ok' | 'failed';
  declare error: string | null;
  declare createdAt: CreationOptional<Date>;
}

export const severities = ['critical', 'high', 'medium', 'low', 'info'] as const;
export type IssueSeverity = (typeof severities)[number];
export const issueStatuses = ['open', 'confirmed', 'false_positive', 'wont_fix', 'fixed'] as const;
export type IssueStatus = (typeof issueStatuses)[number];

/** What a scan read: a git URL, a hosted repository, or an uploaded archive's blob. Never a token. */
export type ScanSource =
  | { type: 'git'; url: string; ref?: string }
  | { type: 'github' | 'gitlab'; repo: string; ref?: string; baseUrl?: string }
  | { type: 'zip'; blobKey: string; fileName: string; sha256: string; bytes: number };

/** Lines around an issue as last seen: `lines[0]` is line `startLine` of the file. */
export interface CodeContext {
  startLine: number;
  lines: string[];
}

export interface ScanWarning {
  path: string | null;
  message: string;
}

export class Scan extends Model<InferAttributes<Scan>, InferCreationAttributes<Scan>> {
  declare id: string;
  declare tenantId: string;
  declare projectId: string;
  declare jobId: string | null;
  declare source: ScanSource;
  declare mode: 'full' | 'incremental';
  declare status: CreationOptional<JobStatus>;
  declare baseScanId: string | null;
  declare commitSha: CreationOptional<string | null>;
  declare archiveSha256: CreationOptional<string | null>;
  declare analysisDigest: CreationOptional<string | null>;
  declare filesTotal: CreationOptional<number>;
  declare filesAnalyzed: CreationOptional<number>;
  declare filesCarried: CreationOptional<number>;
  declare filesSkipped: CreationOptional<number>;
  declare findings: CreationOptional<Partial<Record<IssueSeverity, number>>>;
  declare newIssues: CreationOptional<number>;
  declare fixedIssues: CreationOptional<number>;
  declare warnings: CreationOptional<ScanWarning[]>;
  declare llm: CreationOptional<Record<string, unknown>>;
  declare error: CreationOptional<string | null>;
  declare startedAt: CreationOptional<Date | null>;
  declare finishedAt: CreationOptional<Date | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export class ScanFile extends Model<InferAttributes<ScanFile>, InferCreationAttributes<ScanFile>> {
  declare scanId: string;
  declare seq: number;
  declare path: string;
  declare language: string;
  declare bytes: number;
  /** The git blob of a repository's file; null for an upload's. */
  declare objectId: string | null;
  declare contentHash: string;
  declare state: CreationOptional<'pending' | 'analyzed' | 'carried' | 'failed'>;
  declare batch: number | null;
  declare findings: CreationOptional<number>;
  declare warning: CreationOptional<string | null>;
}

export class Issue extends Model<InferAttributes<Issue>, InferCreationAttributes<Issue>> {
  declare id: string;
  declare tenantId: string;
  declare projectId: string;
  declare fingerprint: string;
  declare occurrence: number;
  declare ruleId: string;
  declare source: 'rule' | 'llm';
  declare title: string;
  declare message: string;
  declare severity: IssueSeverity;
  declare cwe: string | null;
  declare path: string;
  declare startLine: number;
  declare endLine: number;
  declare startColumn: number;
  declare matchedText: string;
  declare codeContext: CreationOptional<CodeContext | Record<string, never>>;
  declare suppressed: CreationOptional<boolean>;
  declare status: CreationOptional<IssueStatus>;
  declare statusComment: CreationOptional<string | null>;
  declare statusChangedBy: CreationOptional<string | null>;
  declare statusChangedAt: CreationOptional<Date | null>;
  declare firstSeenScanId: string | null;
  declare lastSeenScanId: string | null;
  declare fixedInScanId: CreationOptional<string | null>;
  declare firstSeenAt: CreationOptional<Date>;
  declare lastSeenAt: CreationOptional<Date>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

export const documentSourceTypes = ['file', 'url', 'text'] as const;
export type DocumentSourceType = (typeof documentSourceTypes)[number];
export const documentStatuses = ['pending', 'stored', 'failed'] as const;
export type DocumentStatus = (typeof documentStatuses)[number];

/** A document of a project's knowledge base, identified within the project by its source key. */
export class Document extends Model<InferAttributes<Document>, InferCreationAttributes<Document>> {
  declare id: string;
  declare tenantId: string;
  declare projectId: string;
  declare sourceKey: string;
  declare sourceType: DocumentSourceType;
  declare origin: string;
  declare title: string;
  declare format: string;
  declare bytes: CreationOptional<number>;
  declare contentSha256: CreationOptional<string | null>;
  declare status: CreationOptional<DocumentStatus>;
  declare error: CreationOptional<string | null>;
  declare chunkCount: CreationOptional<number>;
  declare tokenCount: CreationOptional<number>;
  declare embeddingModel: CreationOptional<string | null>;
  declare embeddingDimensions: CreationOptional<number | null>;
  declare lastJobId: CreationOptional<string | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
}

/** A chunk of a document's text; its id is also its vector's id in the vector store. */
export class DocumentChunk extends Model<InferAttributes<DocumentChunk>, InferCreationAttributes<DocumentChunk>> {
  declare id: string;
  declare tenantId: string;
  declare projectId: string;
  declare documentId: string;
  declare contentSha256: string;
  declare chunkIndex: number;
  declare text: string;
  declare headingPath: string[];
  declare startOffset: number;
  declare endOffset: number;
  declare tokens: number;
}

export const ingestionItemStates = ['pending', 'fetched', 'parsed', 'chunked', 'embedded', 'stored', 'unchanged', 'failed', 'removed', 'expanded'] as const;
export type IngestionItemState = (typeof ingestionItemStates)[number];

/** One document an ingestion job works through (or an uploaded archive, expanded into its entries). */
export class IngestionItem extends Model<InferAttributes<IngestionItem>, InferCreationAttributes<IngestionItem>> {
  declare jobId: string;
  declare seq: number;
  declare batch: CreationOptional<number | null>;
  declare tenantId: string;
  declare projectId: string;
  declare sourceKey: string;
  declare sourceType: DocumentSourceType | 'archive';
  declare origin: string;
  declare name: string;
  declare title: CreationOptional<string | null>;
  declare mediaType: CreationOptional<string | null>;
  declare url: CreationOptional<string | null>;
  declare blobKey: CreationOptional<string | null>;
  /** Where the document starts in its blob (archive entries are packed several to a blob); null for a blob of its own. */
  declare blobOffset: CreationOptional<number | null>;
  declare expandedFrom: CreationOptional<number | null>;
  declare bytes: CreationOptional<number | null>;
  declare contentSha256: CreationOptional<string | null>;
  declare format: CreationOptional<string | null>;
  declare state: CreationOptional<IngestionItemState>;
  declare error: CreationOptional<string | null>;
  declare documentId: CreationOptional<string | null>;
  declare replacedSha256: CreationOptional<string | null>;
  declare replacedModel: CreationOptional<string | null>;
  declare replacedDimensions: CreationOptional<number | null>;
  declare parsedText: CreationOptional<string | null>;
  declare chunkCount: CreationOptional<number>;
  declare tokenCount: CreationOptional<number>;
  declare embeddingModel: CreationOptional<string | null>;
  declare embeddingDimensions: CreationOptional<number | null>;
}

export type AuditOutcome = 'success' | 'failure' | 'denied';
export type ActorType = 'user' | 'api_token' | 'anonymous' | 'system';

export class AuditLog extends Model<InferAttributes<AuditLog>, InferCreationAttributes<AuditLog>> {
  declare id: CreationOptional<string>; // bigint, returned as a string by pg
  declare tenantId: string | null;
  declare actorType: ActorType;
  declare actorId: string | null;
  declare action: string;
  declare resourceType: string | null;
  declare resourceId: string | null;
  declare outcome: AuditOutcome;
  declare requestId: string | null;
  declare ip: string | null;
  declare userAgent: string | null;
  declare details: CreationOptional<Record<string, unknown>>;
  declare createdAt: CreationOptional<Date>;
}

/** Binds the model classes to a Sequelize instance; the tables come from migrations, never sync(). */
export function initModels(sequelize: Sequelize): void {
  const common = { sequelize, underscored: true };
  Tenant.init(
    { id, name: { type: DataTypes.TEXT, allowNull: false }, createdAt: DataTypes.DATE, updatedAt: DataTypes.DATE },
    { ...common, tableName: 'tenants' },
  );
  User.init(
    {
      id,
      email: { type: DataTypes.TEXT, allowNull: false },
      name: { type: DataTypes.TEXT, allowNull: false },
      passwordHash: { type: DataTypes.TEXT, allowNull: false },
      tokenEpoch: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
      failedLoginCount: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
      lockedUntil: DataTypes.DATE,
      emailVerifiedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'users' },
  );
  Membership.init(
    { id, role, createdAt: DataTypes.DATE, updatedAt: DataTypes.DATE },
    { ...common, tableName: 'memberships' },
  );
  ApiToken.init(
    {
      id,
      name: { type: DataTypes.TEXT, allowNull: false },
      prefix: { type: DataTypes.TEXT, allowNull: false },
      tokenHash: { type: DataTypes.TEXT, allowNull: false },
      role,
      createdBy: DataTypes.UUID,
      expiresAt: DataTypes.DATE,
      lastUsedAt: DataTypes.DATE,
      revokedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'api_tokens' },
  );
  RefreshToken.init(
    {
      id,
      familyId: { type: DataTypes.UUID, allowNull: false },
      tokenHash: { type: DataTypes.TEXT, allowNull: false },
      expiresAt: { type: DataTypes.DATE, allowNull: false },
      usedAt: DataTypes.DATE,
      revokedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'refresh_tokens', updatedAt: false },
  );
  Invitation.init(
    {
      id,
      email: { type: DataTypes.TEXT, allowNull: false },
      role,
      tokenHash: { type: DataTypes.TEXT, allowNull: false },
      invitedBy: DataTypes.UUID,
      expiresAt: { type: DataTypes.DATE, allowNull: false },
      acceptedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'invitations' },
  );
  PasswordReset.init(
    {
      id,
      tokenHash: { type: DataTypes.TEXT, allowNull: false },
      expiresAt: { type: DataTypes.DATE, allowNull: false },
      usedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'password_resets', updatedAt: false },
  );
  EmailVerification.init(
    {
      id,
      tokenHash: { type: DataTypes.TEXT, allowNull: false },
      expiresAt: { type: DataTypes.DATE, allowNull: false },
      usedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'email_verifications', updatedAt: false },
  );
  Project.init(
    {
      id,
      name: { type: DataTypes.TEXT, allowNull: false },
      description: { type: DataTypes.TEXT, allowNull: false, defaultValue: '' },
      settings: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      createdBy: DataTypes.UUID,
      deletionJobId: DataTypes.UUID,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'projects' },
  );
  Job.init(
    {
      id,
      projectId: DataTypes.UUID,
      kind: { type: DataTypes.TEXT, allowNull: false },
      workflowId: { type: DataTypes.TEXT, allowNull: false },
      title: { type: DataTypes.TEXT, allowNull: false },
      status: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'queued' },
      stage: DataTypes.TEXT,
      counters: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      error: DataTypes.JSONB,
      params: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      requestedBy: { type: DataTypes.TEXT, allowNull: false },
      retryOf: DataTypes.UUID,
      lastEventSeq: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
      startedAt: DataTypes.DATE,
      finishedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'jobs' },
  );
  JobEvent.init(
    {
      id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
      seq: { type: DataTypes.INTEGER, allowNull: false },
      type: { type: DataTypes.TEXT, allowNull: false },
      data: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      dedupeKey: DataTypes.TEXT,
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'job_events', updatedAt: false },
  );
  IdempotencyKey.init(
    {
      tenantId: { type: DataTypes.UUID, primaryKey: true },
      route: { type: DataTypes.TEXT, primaryKey: true },
      key: { type: DataTypes.TEXT, primaryKey: true },
      requestHash: { type: DataTypes.TEXT, allowNull: false },
      jobId: { type: DataTypes.UUID, allowNull: false },
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'idempotency_keys', updatedAt: false },
  );
  Secret.init(
    {
      id: { type: DataTypes.UUID, primaryKey: true },
      name: { type: DataTypes.TEXT, allowNull: false },
      description: { type: DataTypes.TEXT, allowNull: false, defaultValue: '' },
      currentVersion: { type: DataTypes.INTEGER, allowNull: false },
      createdBy: DataTypes.TEXT,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'secrets' },
  );
  // A function, not a shared object: Sequelize writes each attribute's column name into its definition.
  const bytes = () => ({ type: DataTypes.BLOB, allowNull: false });
  SecretVersion.init(
    {
      secretId: { type: DataTypes.UUID, primaryKey: true },
      version: { type: DataTypes.INTEGER, primaryKey: true },
      ciphertext: bytes(),
      iv: bytes(),
      authTag: bytes(),
      wrappedDataKey: bytes(),
      dataKeyIv: bytes(),
      dataKeyAuthTag: bytes(),
      masterKeyId: { type: DataTypes.TEXT, allowNull: false },
      enabled: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'secret_versions', updatedAt: false },
  );
  SecretAccessLog.init(
    {
      id,
      secretId: { type: DataTypes.UUID, allowNull: false },
      version: { type: DataTypes.INTEGER, allowNull: false },
      tenantId: { type: DataTypes.UUID, allowNull: false },
      jobId: DataTypes.UUID,
      activity: DataTypes.TEXT,
      actor: DataTypes.TEXT,
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'secret_access_logs', updatedAt: false },
  );
  LlmSettings.init(
    {
      tenantId: { type: DataTypes.UUID, primaryKey: true },
      settings: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      updatedBy: DataTypes.TEXT,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'llm_settings' },
  );
  const count = () => ({ type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });
  LlmUsage.init(
    {
      id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
      tenantId: { type: DataTypes.UUID, allowNull: false },
      projectId: DataTypes.UUID,
      jobId: DataTypes.UUID,
      operation: { type: DataTypes.TEXT, allowNull: false },
      provider: { type: DataTypes.TEXT, allowNull: false },
      model: { type: DataTypes.TEXT, allowNull: false },
      promptTokens: count(),
      completionTokens: count(),
      items: count(),
      // numeric comes back from pg as a string: read it as the number it is.
      costUsd: { type: DataTypes.DECIMAL(14, 6), allowNull: false, defaultValue: 0, get(this: LlmUsage) { return Number(this.getDataValue('costUsd')); } },
      latencyMs: count(),
      cached: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      fallbackFrom: DataTypes.TEXT,
      outcome: { type: DataTypes.TEXT, allowNull: false },
      error: DataTypes.TEXT,
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'llm_usage', updatedAt: false },
  );
  const counter = () => ({ type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });
  Scan.init(
    {
      id: { type: DataTypes.UUID, primaryKey: true },
      tenantId: { type: DataTypes.UUID, allowNull: false },
      projectId: { type: DataTypes.UUID, allowNull: false },
      jobId: DataTypes.UUID,
      source: { type: DataTypes.JSONB, allowNull: false },
      mode: { type: DataTypes.TEXT, allowNull: false },
      status: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'queued' },
      baseScanId: DataTypes.UUID,
      commitSha: DataTypes.TEXT,
      archiveSha256: DataTypes.TEXT,
      analysisDigest: DataTypes.TEXT,
      filesTotal: counter(),
      filesAnalyzed: counter(),
      filesCarried: counter(),
      filesSkipped: counter(),
      findings: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      newIssues: counter(),
      fixedIssues: counter(),
      warnings: { type: DataTypes.JSONB, allowNull: false, defaultValue: [] },
      llm: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      error: DataTypes.TEXT,
      startedAt: DataTypes.DATE,
      finishedAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'scans' },
  );
  ScanFile.init(
    {
      scanId: { type: DataTypes.UUID, primaryKey: true },
      seq: { type: DataTypes.INTEGER, primaryKey: true },
      path: { type: DataTypes.TEXT, allowNull: false },
      language: { type: DataTypes.TEXT, allowNull: false },
      bytes: { type: DataTypes.INTEGER, allowNull: false },
      objectId: DataTypes.TEXT,
      contentHash: { type: DataTypes.TEXT, allowNull: false },
      state: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'pending' },
      batch: DataTypes.INTEGER,
      findings: counter(),
      warning: DataTypes.TEXT,
    },
    { ...common, tableName: 'scan_files', timestamps: false },
  );
  Document.init(
    {
      id: { type: DataTypes.UUID, primaryKey: true },
      tenantId: { type: DataTypes.UUID, allowNull: false },
      projectId: { type: DataTypes.UUID, allowNull: false },
      sourceKey: { type: DataTypes.TEXT, allowNull: false },
      sourceType: { type: DataTypes.TEXT, allowNull: false },
      origin: { type: DataTypes.TEXT, allowNull: false },
      title: { type: DataTypes.TEXT, allowNull: false },
      format: { type: DataTypes.TEXT, allowNull: false },
      // bigint in Postgres; no document comes near 2^53 bytes.
      bytes: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0, get(this: Document) { return Number(this.getDataValue('bytes')); } },
      contentSha256: DataTypes.TEXT,
      status: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'pending' },
      error: DataTypes.TEXT,
      chunkCount: counter(),
      tokenCount: counter(),
      embeddingModel: DataTypes.TEXT,
      embeddingDimensions: DataTypes.INTEGER,
      lastJobId: DataTypes.UUID,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'documents' },
  );
  DocumentChunk.init(
    {
      id: { type: DataTypes.UUID, primaryKey: true },
      tenantId: { type: DataTypes.UUID, allowNull: false },
      projectId: { type: DataTypes.UUID, allowNull: false },
      documentId: { type: DataTypes.UUID, allowNull: false },
      contentSha256: { type: DataTypes.TEXT, allowNull: false },
      chunkIndex: { type: DataTypes.INTEGER, allowNull: false },
      text: { type: DataTypes.TEXT, allowNull: false },
      headingPath: { type: DataTypes.JSONB, allowNull: false, defaultValue: [] },
      startOffset: { type: DataTypes.INTEGER, allowNull: false },
      endOffset: { type: DataTypes.INTEGER, allowNull: false },
      tokens: { type: DataTypes.INTEGER, allowNull: false },
    },
    { ...common, tableName: 'document_chunks', timestamps: false },
  );
  IngestionItem.init(
    {
      jobId: { type: DataTypes.UUID, primaryKey: true },
      seq: { type: DataTypes.INTEGER, primaryKey: true },
      batch: DataTypes.INTEGER,
      tenantId: { type: DataTypes.UUID, allowNull: false },
      projectId: { type: DataTypes.UUID, allowNull: false },
      sourceKey: { type: DataTypes.TEXT, allowNull: false },
      sourceType: { type: DataTypes.TEXT, allowNull: false },
      origin: { type: DataTypes.TEXT, allowNull: false },
      name: { type: DataTypes.TEXT, allowNull: false },
      title: DataTypes.TEXT,
      mediaType: DataTypes.TEXT,
      url: DataTypes.TEXT,
      blobKey: DataTypes.TEXT,
      // bigint in Postgres, read as the number it is (blobs are far below 2^53 bytes).
      blobOffset: { type: DataTypes.BIGINT, get(this: IngestionItem) { const v = this.getDataValue('blobOffset'); return v === null || v === undefined ? null : Number(v); } },
      expandedFrom: DataTypes.INTEGER,
      // bigint in Postgres, read as the number it is (documents are far below 2^53 bytes).
      bytes: { type: DataTypes.BIGINT, get(this: IngestionItem) { const v = this.getDataValue('bytes'); return v === null || v === undefined ? null : Number(v); } },
      contentSha256: DataTypes.TEXT,
      format: DataTypes.TEXT,
      state: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'pending' },
      error: DataTypes.TEXT,
      documentId: DataTypes.UUID,
      replacedSha256: DataTypes.TEXT,
      replacedModel: DataTypes.TEXT,
      replacedDimensions: DataTypes.INTEGER,
      parsedText: DataTypes.TEXT,
      chunkCount: counter(),
      tokenCount: counter(),
      embeddingModel: DataTypes.TEXT,
      embeddingDimensions: DataTypes.INTEGER,
    },
    { ...common, tableName: 'ingestion_items', timestamps: false },
  );
  Issue.init(
    {
      id: { type: DataTypes.UUID, primaryKey: true },
      tenantId: { type: DataTypes.UUID, allowNull: false },
      projectId: { type: DataTypes.UUID, allowNull: false },
      fingerprint: { type: DataTypes.TEXT, allowNull: false },
      occurrence: { type: DataTypes.INTEGER, allowNull: false },
      ruleId: { type: DataTypes.TEXT, allowNull: false },
      source: { type: DataTypes.TEXT, allowNull: false },
      title: { type: DataTypes.TEXT, allowNull: false },
      message: { type: DataTypes.TEXT, allowNull: false },
      severity: { type: DataTypes.TEXT, allowNull: false },
      cwe: DataTypes.TEXT,
      path: { type: DataTypes.TEXT, allowNull: false },
      startLine: { type: DataTypes.INTEGER, allowNull: false },
      endLine: { type: DataTypes.INTEGER, allowNull: false },
      startColumn: { type: DataTypes.INTEGER, allowNull: false },
      matchedText: { type: DataTypes.TEXT, allowNull: false },
      codeContext: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      suppressed: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      status: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'open' },
      statusComment: DataTypes.TEXT,
      statusChangedBy: DataTypes.TEXT,
      statusChangedAt: DataTypes.DATE,
      firstSeenScanId: DataTypes.UUID,
      lastSeenScanId: DataTypes.UUID,
      fixedInScanId: DataTypes.UUID,
      firstSeenAt: DataTypes.DATE,
      lastSeenAt: DataTypes.DATE,
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { ...common, tableName: 'issues' },
  );
  AuditLog.init(
    {
      id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
      tenantId: DataTypes.UUID,
      actorType: { type: DataTypes.TEXT, allowNull: false },
      actorId: DataTypes.TEXT,
      action: { type: DataTypes.TEXT, allowNull: false },
      resourceType: DataTypes.TEXT,
      resourceId: DataTypes.TEXT,
      outcome: { type: DataTypes.TEXT, allowNull: false },
      requestId: DataTypes.TEXT,
      ip: DataTypes.TEXT,
      userAgent: DataTypes.TEXT,
      details: { type: DataTypes.JSONB, allowNull: false, defaultValue: {} },
      createdAt: DataTypes.DATE,
    },
    { ...common, tableName: 'audit_logs', updatedAt: false },
  );

  Membership.belongsTo(User, { foreignKey: 'userId', as: 'user' });
  Membership.belongsTo(Tenant, { foreignKey: 'tenantId', as: 'tenant' });
  ApiToken.belongsTo(Tenant, { foreignKey: 'tenantId' });
  RefreshToken.belongsTo(Tenant, { foreignKey: 'tenantId' });
  Invitation.belongsTo(Tenant, { foreignKey: 'tenantId' });
  Project.belongsTo(Tenant, { foreignKey: 'tenantId' });
  RefreshToken.belongsTo(User, { foreignKey: 'userId' });
  PasswordReset.belongsTo(User, { foreignKey: 'userId' });
  EmailVerification.belongsTo(User, { foreignKey: 'userId' });
  Job.belongsTo(Tenant, { foreignKey: 'tenantId' });
  JobEvent.belongsTo(Job, { foreignKey: 'jobId' });
  Secret.belongsTo(Tenant, { foreignKey: 'tenantId' });
  Scan.belongsTo(Project, { foreignKey: 'projectId' });
  Document.belongsTo(Project, { foreignKey: 'projectId' });
  DocumentChunk.belongsTo(Document, { foreignKey: 'documentId' });
  Document.hasMany(DocumentChunk, { foreignKey: 'documentId', as: 'chunks' });
  Secret.hasMany(SecretVersion, { foreignKey: 'secretId', as: 'versions' });
  SecretVersion.belongsTo(Secret, { foreignKey: 'secretId', as: 'secret' });
}

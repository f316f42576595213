import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { UnauthorizedError } from '../lib/errors';

export interface JwtSettings {
  JWT_SECRET: string;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  ACCESS_TOKEN_TTL_SECONDS: number;
}

export interface AccessClaims {
  sub: string;
  tid: string;
  /** The user's token epoch at issue: bumping it (logout, password reset) voids every access token. */
  ep: number;
}

export function issueAccessToken(config: JwtSettings, claims: AccessClaims): string {
  return jwt.sign({ tid: claims.tid, ep: claims.ep, typ: 'access' }, config.JWT_SECRET, {
    algorithm: 'HS256',
    subject: claims.sub,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    expiresIn: config.ACCESS_TOKEN_TTL_SECONDS,
    jwtid: randomUUID(),
  });
}

/** Verifies with the algorithm, issuer and audience pinned; any failure is a plain 401. */
export function verifyAccessToken(config: JwtSettings, token: string): AccessClaims {
  let payload: string | jwt.JwtPayload;
  try {
    payload = jwt.verify(token, config.JWT_SECRET, {
      algorithms: ['HS256'],
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
    });
  } catch (err) {
    throw new UnauthorizedError(err instanceof jwt.TokenExpiredError ? 'The access token has expired.' : 'The access token is invalid.');
  }
  if (
    typeof payload !== 'object' ||
    payload.typ !== 'access' ||
    typeof payload.sub !== 'string' ||
    typeof payload.tid !== 'string' ||
    typeof payload.ep !== 'number' ||
    typeof payload.jti !== 'string'
  ) {
    throw new UnauthorizedError('The access token is invalid.');
  }
  return { sub: payload.sub, tid: payload.tid, ep: payload.ep };
}

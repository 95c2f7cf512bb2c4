/** The egress part: the proxy every outbound connection of the sandbox goes through. */
export { createEgressService, EGRESS_SERVICE_NAME, terminatedHosts } from './service.js';
export type { EgressService, EgressServiceOptions } from './service.js';
export { createEgressProxy, INFERENCE_HOST } from './proxy.js';
export type { EgressProxy, EgressProxyOptions, EgressCounters, DecideResult, RefusalCode } from './proxy.js';
export { APPROVAL_DECISIONS, cleanDecisionReason, MAX_DECISION_REASON_CHARS } from './pending.js';
export type { ApprovalDecision, PendingView } from './pending.js';
export { decisionFor, domainGlob, parseDuration, parseLasts, ruleForDecision, describeRule, MAX_GRANT_MS } from './grant.js';
export type { BinaryScope, GrantScope, HostScope, Lasts } from './grant.js';
export { canonicalHost, classifyAddress, guardDestination, normaliseIpv4Literal, systemResolver } from './ssrf.js';
export type { Resolver, ResolvedAddress } from './ssrf.js';
export { createBinaryIdentifier } from './identity.js';
export { parseRequestHead, MAX_HEAD_BYTES } from './parser.js';
export { loadOrCreateSandboxCa, trustEnv, SANDBOX_TRUST_DIR } from './tls.js';
export type { SandboxCa, SandboxTrustBundle } from './tls.js';

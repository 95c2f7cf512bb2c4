/**
 * The privacy router (`inference.local`): keys outside the sandbox, PII/secret detection,
 * local-vs-cloud routing, reversible redaction, token and cost budgets, per-call decision events.
 * Other parts import only from here.
 */
export { createInferenceService, inferenceServiceFactory, INFERENCE_SERVICE_NAME } from './service.js';
export type { InferenceService, InferenceServiceOptions } from './service.js';
export { createRouter, OVERHEAD_HEADER } from './router.js';
export type { Router, RouterOptions, RouterStats } from './router.js';
export { validateInferencePolicy, inferencePolicySchema, ENTITY_KINDS } from './schema.js';
export type { EntityKind, InferenceConfig, ProviderConfig, RouteConfig, BudgetCaps } from './schema.js';
export type { BudgetSnapshot, BudgetWindowSnapshot, BudgetScope } from './budget.js';
export { FileAndEnvCredentials, loadOrCreateSandboxToken } from './credentials.js';
export type { CredentialSource } from './credentials.js';
export { Classifier, detectPii } from './detect.js';
export type { Detection, Classification } from './detect.js';

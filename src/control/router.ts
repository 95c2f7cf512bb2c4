/**
 * Tiny method + path router for the control API (`/v1/pending/:id` style patterns).
 */
import type { ControlRoute } from './types.js';

interface CompiledRoute {
  route: ControlRoute;
  segments: string[];
}

export type RouteMatch =
  | { kind: 'found'; route: ControlRoute; params: Record<string, string> }
  | { kind: 'method_not_allowed'; allowed: string[] }
  | { kind: 'not_found' };

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function matchSegments(pattern: string[], actual: string[]): Record<string, string> | undefined {
  if (pattern.length !== actual.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const a = actual[i]!;
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(a);
      } catch {
        return undefined;
      }
    } else if (p !== a) {
      return undefined;
    }
  }
  return params;
}

export class Router {
  private readonly routes: CompiledRoute[] = [];

  add(route: ControlRoute): void {
    const segments = splitPath(route.path);
    const clash = this.routes.find(
      (r) => r.route.method === route.method && r.segments.join('/') === segments.join('/'),
    );
    if (clash) throw new Error(`control route ${route.method} ${route.path} is registered twice`);
    this.routes.push({ route, segments });
  }

  match(method: string, path: string): RouteMatch {
    const actual = splitPath(path);
    const allowed: string[] = [];
    // Literal segments win over :params when both match (e.g. /v1/pending/count vs /v1/pending/:id).
    let best: { route: ControlRoute; params: Record<string, string>; literals: number } | undefined;
    for (const r of this.routes) {
      const params = matchSegments(r.segments, actual);
      if (!params) continue;
      if (r.route.method !== method) {
        allowed.push(r.route.method);
        continue;
      }
      const literals = r.segments.filter((s) => !s.startsWith(':')).length;
      if (!best || literals > best.literals) best = { route: r.route, params, literals };
    }
    if (best) return { kind: 'found', route: best.route, params: best.params };
    if (allowed.length > 0) return { kind: 'method_not_allowed', allowed: [...new Set(allowed)] };
    return { kind: 'not_found' };
  }

  list(): Array<{ method: string; path: string }> {
    return this.routes.map((r) => ({ method: r.route.method, path: r.route.path }));
  }
}
